# The worker: runs the approval workflow's steps. It holds an SSE stream to
# the server (so at least one instance, CPU always allocated), serves only
# GET /health on $PORT, and takes no traffic from outside the project.

locals {
  # Cloud Run sets PORT from container_port; worker/main.py defaults to 8080 too.
  worker_port = 8080
  # /health: the process answers (liveness). /ready: its SSE stream to the
  # server is open (startup), so a new revision takes over only once the
  # server can reach it.
  worker_health_path = "/health"
  worker_ready_path  = "/ready"

  # Changes whenever the server's revision template does (unknown in the plan
  # while it is being replaced): a new server revision rolls the worker in the
  # same apply, after the server (the worker reads its URI). The new worker
  # instances open their SSE streams to the new server instance at once,
  # instead of staying on the old one until their stream ends (up to
  # worker_sse_timeout). README.md, "Operating notes".
  server_rollout = substr(sha256(jsonencode(google_cloud_run_v2_service.server.template)), 0, 16)
}

resource "google_cloud_run_v2_service" "worker" {
  name                = local.worker_name
  location            = var.region
  ingress             = "INGRESS_TRAFFIC_INTERNAL_ONLY"
  deletion_protection = var.deletion_protection
  labels              = { component = "worker" }

  template {
    service_account       = google_service_account.component["worker"].email
    execution_environment = "EXECUTION_ENVIRONMENT_GEN2"
    labels                = { component = "worker", server-rollout = local.server_rollout }

    scaling {
      min_instance_count = var.worker_min_instances
      max_instance_count = var.worker_max_instances
    }

    containers {
      name  = "worker"
      image = local.worker_image

      ports {
        container_port = local.worker_port # becomes PORT
      }

      resources {
        limits = {
          cpu    = "1"
          memory = "512Mi"
        }
        cpu_idle          = false
        startup_cpu_boost = true
      }

      env {
        name  = "RESONATE_URL"
        value = google_cloud_run_v2_service.server.uri
      }
      env {
        name = "RESONATE_TOKEN"
        value_source {
          secret_key_ref {
            secret  = data.google_secret_manager_secret.operator["resonate-token-worker"].secret_id
            version = "latest"
          }
        }
      }
      env {
        name  = "HITL_WORKER_GROUP"
        value = var.worker_group
      }
      env {
        name = "HITL_SIGNING_KEY"
        value_source {
          secret_key_ref {
            secret  = google_secret_manager_secret.signing_key.secret_id
            version = google_secret_manager_secret_version.signing_key.version
          }
        }
      }
      env {
        name  = "HITL_UNBLOCK_URL"
        value = local.unblock_public_url
      }
      env {
        name  = "HITL_TASK_TTL"
        value = tostring(var.worker_task_ttl)
      }
      env {
        name  = "HITL_SSE_TIMEOUT"
        value = tostring(var.worker_sse_timeout)
      }
      env {
        name  = "HITL_SLACK_ALLOWED_HOSTS"
        value = var.slack_allowed_hosts
      }
      env {
        name  = "HITL_WEBHOOK_ALLOWED_HOSTS"
        value = var.webhook_allowed_hosts
      }
      env {
        name  = "HITL_NOTIFY_TIMEOUT"
        value = tostring(var.notify_timeout)
      }
      env {
        name = "HITL_NOTIFY_WEBHOOK_SECRET"
        value_source {
          secret_key_ref {
            secret  = google_secret_manager_secret.notify_webhook.secret_id
            version = google_secret_manager_secret_version.notify_webhook.version
          }
        }
      }
      env {
        name  = "HITL_DELIVERY_RETRY_FOR"
        value = tostring(var.delivery_retry_for)
      }
      env {
        name  = "HITL_SIGN_IN"
        value = var.approver_sign_in
      }
      env {
        name  = "HITL_LOG_FORMAT"
        value = var.log_format
      }
      env {
        name  = "GOOGLE_CLOUD_PROJECT"
        value = var.project_id
      }
      env {
        name  = "SMTP_HOST"
        value = var.smtp_host
      }
      env {
        name  = "SMTP_PORT"
        value = tostring(var.smtp_port)
      }
      env {
        name  = "SMTP_SECURITY"
        value = var.smtp_security
      }
      env {
        name  = "SMTP_USERNAME"
        value = var.smtp_username
      }
      env {
        name = "SMTP_PASSWORD"
        value_source {
          secret_key_ref {
            secret  = data.google_secret_manager_secret.operator["smtp-password"].secret_id
            version = "latest"
          }
        }
      }
      env {
        name  = "SMTP_FROM"
        value = var.smtp_from
      }

      startup_probe {
        http_get {
          path = local.worker_ready_path
          port = local.worker_port
        }
        period_seconds    = 5
        timeout_seconds   = 3
        failure_threshold = 12
      }

      liveness_probe {
        http_get {
          path = local.worker_health_path
          port = local.worker_port
        }
        period_seconds    = 30
        timeout_seconds   = 5
        failure_threshold = 3
      }
    }
  }

  depends_on = [
    google_secret_manager_secret_iam_binding.operator,
    google_secret_manager_secret_iam_binding.signing_key,
  ]
}
