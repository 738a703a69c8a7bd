# The HTTP edges, as Cloud Run functions (2nd gen): `start` (validate, start
# the run by id, answer status) and `unblock` (approval page, settle the
# decision). Both are built by Cloud Functions from the bundle made by
# scripts/bundle_functions.py (main.py + hitl/ + requirements.txt). The
# functions framework serves them as ASGI because functions/main.py declares
# them with @functions_framework.aio.http: no extra environment variable.

resource "google_cloudfunctions2_function" "start" {
  #checkov:skip=CKV_GCP_124:Callers are outside Google Cloud (CI, webhooks); access is limited by IAM invokers or an HMAC webhook signature (start_auth).
  name        = local.start_name
  location    = var.region
  description = "hitl: start an approval (POST) and report its status (GET)"
  labels      = { component = "start" }

  build_config {
    runtime           = "python312"
    entry_point       = "start"
    service_account   = google_service_account.functions_build.id
    docker_repository = google_artifact_registry_repository.functions.id

    source {
      storage_source {
        bucket = google_storage_bucket.functions_source.name
        object = google_storage_bucket_object.functions_bundle.name
      }
    }
  }

  service_config {
    min_instance_count               = 0
    max_instance_count               = var.functions_max_instances
    available_cpu                    = "1"
    available_memory                 = "512Mi"
    max_instance_request_concurrency = 40
    # GET ?workflow_id=...&wait=60 holds the request up to 60 s (long poll).
    timeout_seconds                = 90
    ingress_settings               = "ALLOW_ALL"
    all_traffic_on_latest_revision = true
    service_account_email          = google_service_account.start.email

    environment_variables = {
      RESONATE_URL               = google_cloud_run_v2_service.server.uri
      HITL_WORKER_GROUP          = var.worker_group
      HITL_SERVER_TIMEOUT        = tostring(var.server_timeout)
      HITL_SLACK_ALLOWED_HOSTS   = var.slack_allowed_hosts
      HITL_WEBHOOK_ALLOWED_HOSTS = var.webhook_allowed_hosts
      HITL_LOG_FORMAT            = var.log_format
      GOOGLE_CLOUD_PROJECT       = var.project_id
    }

    secret_environment_variables {
      key        = "RESONATE_TOKEN"
      project_id = var.project_id
      secret     = data.google_secret_manager_secret.resonate_token_start.secret_id
      version    = "latest"
    }

    # Only in webhook mode: then every POST must carry X-Hitl-Signature.
    dynamic "secret_environment_variables" {
      for_each = local.start_webhook ? [1] : []
      content {
        key        = "HITL_WEBHOOK_SECRET"
        project_id = var.project_id
        secret     = google_secret_manager_secret.webhook[0].secret_id
        version    = google_secret_manager_secret_version.webhook[0].version
      }
    }
  }

  depends_on = [
    google_project_iam_member.functions_build_sources,
    google_project_iam_member.log_writer,
    google_artifact_registry_repository_iam_member.functions_build_writer,
    google_secret_manager_secret_iam_binding.resonate_token_start,
    google_secret_manager_secret_iam_binding.webhook,
  ]
}

resource "google_cloudfunctions2_function" "unblock" {
  #checkov:skip=CKV_GCP_124:Approvers open emailed links from anywhere; every request must carry a link token signed with HITL_SIGNING_KEY.
  name        = local.unblock_name
  location    = var.region
  description = "hitl: the approval page (GET/HEAD) and the decision (POST) behind emailed links"
  labels      = { component = "unblock" }

  build_config {
    runtime           = "python312"
    entry_point       = "unblock"
    service_account   = google_service_account.functions_build.id
    docker_repository = google_artifact_registry_repository.functions.id

    source {
      storage_source {
        bucket = google_storage_bucket.functions_source.name
        object = google_storage_bucket_object.functions_bundle.name
      }
    }
  }

  service_config {
    min_instance_count               = 0
    max_instance_count               = var.functions_max_instances
    available_cpu                    = "1"
    available_memory                 = "512Mi"
    max_instance_request_concurrency = 40
    timeout_seconds                  = 60
    ingress_settings                 = "ALLOW_ALL"
    all_traffic_on_latest_revision   = true
    service_account_email            = google_service_account.unblock.email

    environment_variables = {
      RESONATE_URL         = google_cloud_run_v2_service.server.uri
      HITL_SERVER_TIMEOUT  = tostring(var.server_timeout)
      HITL_LOG_FORMAT      = var.log_format
      GOOGLE_CLOUD_PROJECT = var.project_id
    }

    secret_environment_variables {
      key        = "RESONATE_TOKEN"
      project_id = var.project_id
      secret     = data.google_secret_manager_secret.resonate_token_unblock.secret_id
      version    = "latest"
    }

    secret_environment_variables {
      key        = "HITL_SIGNING_KEY"
      project_id = var.project_id
      secret     = google_secret_manager_secret.signing_key.secret_id
      version    = google_secret_manager_secret_version.signing_key.version
    }
  }

  depends_on = [
    google_project_iam_member.functions_build_sources,
    google_project_iam_member.log_writer,
    google_artifact_registry_repository_iam_member.functions_build_writer,
    google_secret_manager_secret_iam_binding.resonate_token_unblock,
    google_secret_manager_secret_iam_binding.signing_key,
  ]
}
