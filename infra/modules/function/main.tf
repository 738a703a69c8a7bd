# One HTTP function (Cloud Run functions, 2nd gen) built by Cloud Functions from
# the bundle made by scripts/bundle_functions.py (main.py + hitl/ +
# requirements.txt), and who may invoke it. The functions framework serves it
# as ASGI because functions/main.py declares it with
# @functions_framework.aio.http: no extra environment variable.

locals {
  secret_env = { for key, s in var.secret_env : key => s if s.enabled }
}

resource "google_cloudfunctions2_function" "this" {
  #checkov:skip=CKV_GCP_124:Callers are outside Google Cloud: approvers open emailed links from anywhere (unblock: every request carries a signed link token), CI and webhooks call start (IAM invokers or an HMAC webhook signature, start_auth).
  name        = var.name
  location    = var.region
  description = var.description
  labels      = var.labels

  build_config {
    runtime           = "python312"
    entry_point       = var.entry_point
    service_account   = var.build.service_account
    docker_repository = var.build.docker_repository

    source {
      storage_source {
        bucket = var.bundle.bucket
        object = var.bundle.object
      }
    }
  }

  service_config {
    min_instance_count               = 0
    max_instance_count               = var.runtime.max_instances
    available_cpu                    = var.runtime.cpu
    available_memory                 = var.runtime.memory
    max_instance_request_concurrency = var.runtime.concurrency
    timeout_seconds                  = var.runtime.timeout_seconds
    ingress_settings                 = var.ingress
    all_traffic_on_latest_revision   = true
    service_account_email            = var.runtime.service_account_email
    environment_variables            = var.env

    dynamic "secret_environment_variables" {
      for_each = local.secret_env
      content {
        key        = secret_environment_variables.key
        project_id = var.project_id
        secret     = secret_environment_variables.value.secret
        version    = secret_environment_variables.value.version
      }
    }
  }
}

# Authoritative: exactly these principals may invoke the function.
resource "google_cloud_run_v2_service_iam_binding" "invoker" {
  project  = var.project_id
  location = google_cloudfunctions2_function.this.location
  name     = google_cloudfunctions2_function.this.service_config[0].service
  role     = "roles/run.invoker"
  members  = var.invokers
}
