# One service account per component, each with only what it uses. No
# primitive roles. Secret access is granted per secret with authoritative
# bindings, so exactly the listed accounts can read each one.

locals {
  service_accounts = {
    server          = { id = "server", display_name = "hitl Resonate server" }
    worker          = { id = "worker", display_name = "hitl worker" }
    start           = { id = "start", display_name = "hitl start function" }
    unblock         = { id = "unblock", display_name = "hitl unblock function" }
    functions_build = { id = "fn-build", display_name = "hitl functions build (Cloud Build)" }
  }
}

resource "google_service_account" "component" {
  for_each = local.service_accounts

  account_id   = "${var.name_prefix}-${each.value.id}"
  display_name = each.value.display_name
  depends_on   = [google_project_service.apis]
}

# --- Project-level roles (those with no narrower resource to bind on) -------

resource "google_project_iam_member" "server_cloudsql_client" {
  project = var.project_id
  role    = "roles/cloudsql.client"
  member  = "serviceAccount:${google_service_account.component["server"].email}"
}

resource "google_project_iam_member" "log_writer" {
  # Runtimes log to stdout (Cloud Run forwards it); the role covers the
  # google-cloud-logging client writing through the API, and build logs.
  for_each = google_service_account.component

  project = var.project_id
  role    = "roles/logging.logWriter"
  member  = "serviceAccount:${each.value.email}"
}

# The functions build reads the source Cloud Functions copies into its own
# gcf-v2-sources-* bucket (not managed here), hence a conditional grant.
resource "google_project_iam_member" "functions_build_sources" {
  project = var.project_id
  role    = "roles/storage.objectViewer"
  member  = "serviceAccount:${google_service_account.component["functions_build"].email}"

  condition {
    title       = "function-sources-only"
    description = "Only the Cloud Functions source buckets and this stack's bundle bucket"
    expression  = "resource.name.startsWith(\"projects/_/buckets/gcf-v2-sources-\") || resource.name.startsWith(\"projects/_/buckets/${google_storage_bucket.functions_source.name}\")"
  }
}

resource "google_artifact_registry_repository_iam_member" "functions_build_writer" {
  project    = var.project_id
  location   = google_artifact_registry_repository.images["functions"].location
  repository = google_artifact_registry_repository.images["functions"].name
  role       = "roles/artifactregistry.writer"
  member     = "serviceAccount:${google_service_account.component["functions_build"].email}"
}

# --- Secrets: exactly the readers -------------------------------------------

resource "google_secret_manager_secret_iam_binding" "db_url" {
  secret_id = google_secret_manager_secret.db_url.id
  role      = "roles/secretmanager.secretAccessor"
  members   = ["serviceAccount:${google_service_account.component["server"].email}"]
}

resource "google_secret_manager_secret_iam_binding" "jwt_public_key" {
  secret_id = google_secret_manager_secret.jwt_public_key.id
  role      = "roles/secretmanager.secretAccessor"
  members   = ["serviceAccount:${google_service_account.component["server"].email}"]
}

resource "google_secret_manager_secret_iam_binding" "signing_key" {
  secret_id = google_secret_manager_secret.signing_key.id
  role      = "roles/secretmanager.secretAccessor"
  members = [
    "serviceAccount:${google_service_account.component["unblock"].email}",
    "serviceAccount:${google_service_account.component["worker"].email}",
  ]
}

resource "google_secret_manager_secret_iam_binding" "webhook" {
  count = local.start_webhook ? 1 : 0

  secret_id = google_secret_manager_secret.webhook[0].id
  role      = "roles/secretmanager.secretAccessor"
  members   = ["serviceAccount:${google_service_account.component["start"].email}"]
}

# The secrets the operator made: each readable by its one component.
resource "google_secret_manager_secret_iam_binding" "operator" {
  for_each = local.operator_secrets

  secret_id = data.google_secret_manager_secret.operator[each.key].id
  role      = "roles/secretmanager.secretAccessor"
  members   = ["serviceAccount:${google_service_account.component[each.value].email}"]
}

# --- Who may call what --------------------------------------------------------

# The Resonate server is public at the network level: the worker, the
# functions and the e2e tests reach it over HTTPS. Every request must carry a
# JWT signed by the operator's key (RESONATE_AUTH__PUBLICKEY); Cloud Run IAM
# cannot front it because the SDK's bearer token is that JWT.
resource "google_cloud_run_v2_service_iam_binding" "server_invoker" {
  project  = var.project_id
  location = google_cloud_run_v2_service.server.location
  name     = google_cloud_run_v2_service.server.name
  role     = "roles/run.invoker"
  members  = ["allUsers"]
}

# unblock (public) and start (start_invokers, or public in webhook mode): the
# invoker binding is part of each function (modules/function, functions.tf).

# The worker has no invoker at all: ingress is internal and nothing calls it.

resource "google_secret_manager_secret_iam_binding" "notify_webhook" {
  secret_id = google_secret_manager_secret.notify_webhook.id
  role      = "roles/secretmanager.secretAccessor"
  members   = ["serviceAccount:${google_service_account.component["worker"].email}"]
}
