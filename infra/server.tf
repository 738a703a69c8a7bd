# The Resonate server: every promise, task, lease and timer. Exactly one
# instance (its SSE stream registry lives in memory), CPU always allocated
# (background loops every 100 ms and 1 s), requests up to an hour (SSE).

locals {
  server_port = 8001
  # The JWT public key is mounted as a file; the server reads a PEM path.
  server_auth_dir = "/etc/resonate/auth"
}

resource "google_cloud_run_v2_service" "server" {
  name                = local.server_name
  location            = var.region
  ingress             = "INGRESS_TRAFFIC_ALL"
  deletion_protection = var.deletion_protection
  labels              = { component = "server" }

  template {
    service_account                  = google_service_account.component["server"].email
    timeout                          = "3600s"
    max_instance_request_concurrency = 1000
    execution_environment            = "EXECUTION_ENVIRONMENT_GEN2"
    labels                           = { component = "server" }

    scaling {
      min_instance_count = 1
      max_instance_count = 1
    }

    volumes {
      name = "cloudsql"
      cloud_sql_instance {
        instances = [google_sql_database_instance.resonate.connection_name]
      }
    }

    volumes {
      name = "auth"
      secret {
        secret       = google_secret_manager_secret.jwt_public_key.secret_id
        default_mode = 292 # 0444
        items {
          version = google_secret_manager_secret_version.jwt_public_key.version
          path    = "public.pem"
        }
      }
    }

    containers {
      name  = "resonate"
      image = var.resonate_image
      # Image entrypoint: resonate-server.
      args = ["serve"]

      ports {
        name           = "http1"
        container_port = local.server_port
      }

      resources {
        limits = {
          cpu    = var.server_cpu
          memory = var.server_memory
        }
        cpu_idle          = false
        startup_cpu_boost = true
      }

      env {
        name  = "RESONATE_SERVER__PORT" # it does not read PORT
        value = tostring(local.server_port)
      }
      env {
        name  = "RESONATE_SERVER__BIND"
        value = "0.0.0.0"
      }
      env {
        name  = "RESONATE_SERVER__URL"
        value = local.server_url
      }
      env {
        name  = "RESONATE_STORAGE__TYPE"
        value = "postgres"
      }
      env {
        name = "RESONATE_STORAGE__POSTGRES__URL"
        value_source {
          secret_key_ref {
            secret  = google_secret_manager_secret.db_url.secret_id
            version = google_secret_manager_secret_version.db_url.version
          }
        }
      }
      env {
        name  = "RESONATE_STORAGE__POSTGRES__POOL_SIZE"
        value = tostring(var.resonate_pool_size)
      }
      env {
        name  = "RESONATE_AUTH__PUBLICKEY"
        value = "${local.server_auth_dir}/public.pem"
      }
      env {
        # Prometheus endpoint inside the container (Cloud Run exposes one port only).
        name  = "RESONATE_OBSERVABILITY__METRICS_PORT"
        value = "9090"
      }

      volume_mounts {
        name       = "cloudsql"
        mount_path = "/cloudsql"
      }
      volume_mounts {
        name       = "auth"
        mount_path = local.server_auth_dir
      }

      # Ready once storage answers (the schema is created at start).
      startup_probe {
        http_get {
          path = "/ready"
          port = local.server_port
        }
        initial_delay_seconds = 0
        period_seconds        = 5
        timeout_seconds       = 3
        failure_threshold     = 24
      }

      liveness_probe {
        http_get {
          path = "/health"
          port = local.server_port
        }
        period_seconds    = 15
        timeout_seconds   = 3
        failure_threshold = 4
      }
    }
  }

  depends_on = [
    # A new DB URL version carries a new password: roll only after the user has it.
    google_sql_user.resonate,
    google_project_iam_member.server_cloudsql_client,
    google_secret_manager_secret_iam_binding.db_url,
    google_secret_manager_secret_iam_binding.jwt_public_key,
  ]
}
