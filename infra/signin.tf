# Approver sign-in (approver_sign_in = "iap"): unblock behind Identity-Aware Proxy.
#
# Cloud Run functions cannot have IAP turned on themselves with the GA provider
# (iap_enabled is a google-beta argument of google_cloud_run_v2_service, and a
# function's service is Cloud Functions' to manage), so the shape is the one that
# works with functions today: an external HTTPS load balancer whose backend
# service (a serverless NEG of the function) has IAP on. The function then takes
# traffic from the load balancer only (ingress internal-and-GCLB) and only from
# IAP's service agent (its run.invoker): nobody reaches it around IAP, and every
# request it gets carries IAP's signed assertion, which unblock verifies
# (audience: this backend service). With approver_sign_in = "none" none of this
# exists and unblock is public, as before.
#
# By hand (infra/README.md, "Approver sign-in"): the DNS A record of
# approver_domain; IAP's service agent, once per project; the OAuth consent
# screen, for approvers outside the organisation.

locals {
  sign_in = var.approver_sign_in == "iap"

  # Where approvers (and the links) reach unblock.
  unblock_public_url = local.sign_in ? "https://${var.approver_domain}/" : module.function["unblock"].url

  # IAP's service agent: the identity IAP calls the function with.
  iap_agent = "serviceAccount:service-${data.google_project.this.number}@gcp-sa-iap.iam.gserviceaccount.com"

  # The aud of IAP's assertions for a backend service (IAP's signed-headers guide).
  iap_audience = local.sign_in ? "/projects/${data.google_project.this.number}/global/backendServices/${google_compute_backend_service.unblock[0].generated_id}" : ""
}

resource "google_compute_region_network_endpoint_group" "unblock" {
  count = local.sign_in ? 1 : 0

  name                  = "${var.name_prefix}-unblock"
  region                = var.region
  network_endpoint_type = "SERVERLESS"

  cloud_function {
    function = local.unblock_name
  }

  depends_on = [google_project_service.apis]
}

resource "google_compute_backend_service" "unblock" {
  count = local.sign_in ? 1 : 0

  name                  = "${var.name_prefix}-unblock"
  protocol              = "HTTPS"
  load_balancing_scheme = "EXTERNAL"

  backend {
    group = google_compute_region_network_endpoint_group.unblock[0].id
  }

  # Google-managed OAuth client: no client id or secret to keep. An OAuth client of
  # your own (for approvers outside the organisation) is set by hand and kept.
  iap {
    enabled = true
  }

  lifecycle {
    ignore_changes = [iap[0].oauth2_client_id, iap[0].oauth2_client_secret]
  }

  log_config {
    enable      = true
    sample_rate = 1
  }
}

resource "google_compute_url_map" "unblock" {
  count = local.sign_in ? 1 : 0

  name            = "${var.name_prefix}-unblock"
  default_service = google_compute_backend_service.unblock[0].id
}

resource "google_compute_managed_ssl_certificate" "unblock" {
  count = local.sign_in ? 1 : 0

  name = "${var.name_prefix}-unblock"

  managed {
    domains = [var.approver_domain]
  }
}

resource "google_compute_ssl_policy" "unblock" {
  count = local.sign_in ? 1 : 0

  name            = "${var.name_prefix}-unblock"
  profile         = "MODERN"
  min_tls_version = "TLS_1_2"
}

resource "google_compute_target_https_proxy" "unblock" {
  count = local.sign_in ? 1 : 0

  name             = "${var.name_prefix}-unblock"
  url_map          = google_compute_url_map.unblock[0].id
  ssl_certificates = [google_compute_managed_ssl_certificate.unblock[0].id]
  ssl_policy       = google_compute_ssl_policy.unblock[0].id
}

resource "google_compute_global_address" "unblock" {
  count = local.sign_in ? 1 : 0

  name = "${var.name_prefix}-unblock"
}

resource "google_compute_global_forwarding_rule" "unblock" {
  count = local.sign_in ? 1 : 0

  name                  = "${var.name_prefix}-unblock"
  target                = google_compute_target_https_proxy.unblock[0].id
  ip_address            = google_compute_global_address.unblock[0].id
  port_range            = "443"
  load_balancing_scheme = "EXTERNAL"
  labels                = local.labels
}

# Who may sign in. Each approver must also be the one a link names (unblock checks).
resource "google_iap_web_backend_service_iam_member" "approvers" {
  for_each = local.sign_in ? toset(var.approver_principals) : toset([])

  project             = var.project_id
  web_backend_service = google_compute_backend_service.unblock[0].name
  role                = "roles/iap.httpsResourceAccessor"
  member              = each.value
}
