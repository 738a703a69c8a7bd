# Cloud SQL for Postgres: the Resonate server's storage (every promise, task
# and timer). The server reaches it through Cloud Run's built-in Cloud SQL
# connection (a unix socket under /cloudsql), never over an open network.

resource "google_sql_database_instance" "resonate" {
  #checkov:skip=CKV_GCP_79:The major version is a variable (db_version, 14-18); the default POSTGRES_17 is well within support and proven with db-f1-micro.
  #checkov:skip=CKV2_GCP_13:log_duration logs every statement, and the server's loops run queries every 100 ms: log noise and cost for no diagnostic gain (log_min_duration_statement is available for slow-query hunts).
  #checkov:skip=CKV_GCP_60:Public IP with no authorized networks: only IAM-authorized Cloud SQL connectors (Cloud Run's /cloudsql socket) can connect. A private IP needs a VPC and a connector, doubling the smallest setup's cost.
  name                = local.server_name
  database_version    = var.db_version
  region              = var.region
  deletion_protection = var.deletion_protection

  settings {
    edition                     = "ENTERPRISE"
    tier                        = var.db_tier
    availability_type           = var.db_availability_type
    disk_type                   = "PD_SSD"
    disk_size                   = var.db_disk_size_gb
    disk_autoresize             = true
    deletion_protection_enabled = var.deletion_protection
    user_labels                 = merge(local.labels, { component = "server" })

    ip_configuration {
      ipv4_enabled = true
      # Connectors present client certificates; nothing else gets in.
      ssl_mode = "TRUSTED_CLIENT_CERTIFICATE_REQUIRED"
    }

    backup_configuration {
      enabled                        = true
      start_time                     = "03:00"
      point_in_time_recovery_enabled = true
      transaction_log_retention_days = 7

      backup_retention_settings {
        retained_backups = 7
      }
    }

    maintenance_window {
      day  = 7
      hour = 4
    }

    database_flags {
      name  = "log_checkpoints"
      value = "on"
    }
    database_flags {
      name  = "log_connections"
      value = "on"
    }
    database_flags {
      name  = "log_disconnections"
      value = "on"
    }
    database_flags {
      name  = "log_lock_waits"
      value = "on"
    }
    database_flags {
      name  = "log_min_messages"
      value = "error"
    }
    database_flags {
      name  = "log_min_error_statement"
      value = "error"
    }
    database_flags {
      name  = "log_temp_files"
      value = "0"
    }
    database_flags {
      name  = "log_min_duration_statement"
      value = "-1"
    }
    database_flags {
      name  = "log_hostname"
      value = "on"
    }
    database_flags {
      name  = "log_statement"
      value = "ddl"
    }
    database_flags {
      name  = "cloudsql.enable_pgaudit"
      value = "on"
    }
  }

  depends_on = [google_project_service.apis]
}

resource "google_sql_database" "resonate" {
  name     = "resonate"
  instance = google_sql_database_instance.resonate.name
}

locals {
  db_user = "resonate"
}

ephemeral "random_password" "db" {
  # URL-safe: it goes into the postgres:// URL unescaped.
  length  = 32
  special = false
}

resource "google_sql_user" "resonate" {
  name     = local.db_user
  instance = google_sql_database_instance.resonate.name
  # Write-only: never in the state. It is sent again exactly when the URL secret
  # gets a new version, which carries the same ephemeral password (one apply
  # opens the ephemeral resource once), so the two never disagree.
  password_wo         = ephemeral.random_password.db.result
  password_wo_version = google_secret_manager_secret_version.db_url.version
  # The user owns the server's tables, and Postgres refuses to drop a role that
  # owns objects: deleting it would stop `terraform destroy`. Deleting the
  # instance removes it anyway.
  deletion_policy = "ABANDON"
}
