# The HTTP edges, as Cloud Run functions (2nd gen), one shape in
# modules/function: `start` (validate, start the run by id, answer status) and
# `unblock` (approval page, settle the decision). What differs between them is
# the data below: names, timeouts, environment, secrets and invokers.

locals {
  functions = {
    start = {
      name        = local.start_name
      description = "hitl: start an approval (POST) and report its status (GET)"
      account     = google_service_account.component["start"].email
      # GET ?workflow_id=...&wait=60 holds the request up to 60 s (long poll).
      timeout_seconds = 90
      # Only the listed principals (start_auth = "iam"), or public with every
      # POST signed with the webhook secret (start_auth = "webhook").
      invokers = local.start_webhook ? ["allUsers"] : var.start_invokers
      ingress  = "ALLOW_ALL"
      env = {
        RESONATE_URL               = google_cloud_run_v2_service.server.uri
        HITL_WORKER_GROUP          = var.worker_group
        HITL_SERVER_TIMEOUT        = tostring(var.server_timeout)
        HITL_SLACK_ALLOWED_HOSTS   = var.slack_allowed_hosts
        HITL_WEBHOOK_ALLOWED_HOSTS = var.webhook_allowed_hosts
        HITL_SIGN_IN               = var.approver_sign_in
        HITL_LOG_FORMAT            = var.log_format
        GOOGLE_CLOUD_PROJECT       = var.project_id
      }
      secret_env = {
        RESONATE_TOKEN = {
          secret  = data.google_secret_manager_secret.operator["resonate-token-start"].secret_id
          version = "latest"
        }
        # Only in webhook mode: then every POST must carry X-Hitl-Signature.
        HITL_WEBHOOK_SECRET = {
          secret  = one(google_secret_manager_secret.webhook[*].secret_id)
          version = one(google_secret_manager_secret_version.webhook[*].version)
          enabled = local.start_webhook
        }
      }
    }
    unblock = {
      name        = local.unblock_name
      description = "hitl: the approval page (GET/HEAD) and the decision (POST) behind emailed links"
      account     = google_service_account.component["unblock"].email
      # Approvers open emailed links from anywhere: public, every request
      # carrying a link token signed with HITL_SIGNING_KEY. With approver sign-in,
      # only the load balancer reaches it, and only IAP may invoke it (signin.tf).
      timeout_seconds = 60
      invokers        = local.sign_in ? [local.iap_agent] : ["allUsers"]
      ingress         = local.sign_in ? "ALLOW_INTERNAL_AND_GCLB" : "ALLOW_ALL"
      env = {
        RESONATE_URL          = google_cloud_run_v2_service.server.uri
        HITL_SERVER_TIMEOUT   = tostring(var.server_timeout)
        HITL_SIGN_IN          = var.approver_sign_in
        HITL_IAP_AUDIENCE     = local.iap_audience
        HITL_IAP_KEYS_URL     = "https://www.gstatic.com/iap/verify/public_key-jwk"
        HITL_APPROVER_ALIASES = var.approver_aliases
        HITL_LOG_FORMAT       = var.log_format
        GOOGLE_CLOUD_PROJECT  = var.project_id
      }
      secret_env = {
        RESONATE_TOKEN = {
          secret  = data.google_secret_manager_secret.operator["resonate-token-unblock"].secret_id
          version = "latest"
        }
        HITL_SIGNING_KEY = {
          secret  = google_secret_manager_secret.signing_key.secret_id
          version = google_secret_manager_secret_version.signing_key.version
        }
      }
    }
  }
}

module "function" {
  source   = "./modules/function"
  for_each = local.functions

  project_id  = var.project_id
  region      = var.region
  name        = each.value.name
  entry_point = each.key
  description = each.value.description
  labels      = { component = each.key }
  invokers    = each.value.invokers
  ingress     = each.value.ingress
  env         = each.value.env
  secret_env  = each.value.secret_env

  bundle = {
    bucket = google_storage_bucket.functions_source.name
    object = google_storage_bucket_object.functions_bundle.name
  }
  build = {
    service_account   = google_service_account.component["functions_build"].id
    docker_repository = google_artifact_registry_repository.images["functions"].id
  }
  runtime = {
    service_account_email = each.value.account
    max_instances         = var.functions_max_instances
    timeout_seconds       = each.value.timeout_seconds
  }

  # Each function's account must be able to read its secrets before its first
  # revision starts, and the build account must be able to build.
  depends_on = [
    google_project_iam_member.functions_build_sources,
    google_project_iam_member.log_writer,
    google_artifact_registry_repository_iam_member.functions_build_writer,
    google_secret_manager_secret_iam_binding.operator,
    google_secret_manager_secret_iam_binding.webhook,
    google_secret_manager_secret_iam_binding.signing_key,
  ]
}
