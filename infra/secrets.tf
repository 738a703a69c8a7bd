# Secrets. Two kinds:
#
# * Generated here and stored as secret versions: the database URL, the link
#   signing key, the notify-webhook secret and, in webhook mode, the webhook
#   secret. Their values come from ephemeral random_password resources and go
#   to Secret Manager through write-only arguments (secret_data_wo, and the SQL
#   user's password_wo): they are never written to the plan or the state
#   (Terraform >= 1.11). Runtimes pin the version Terraform wrote, so a new
#   value rolls out new revisions in the same apply. A write-only value cannot
#   be diffed: a new one is written exactly when its `rotations` entry grows
#   (README.md, "Rotating secrets").
# * Made by the operator before the first apply and only *referenced* here
#   (data sources), so their values never reach the state: the Resonate JWTs
#   (one per component) and the SMTP password. See README.md.
#
# Every version is replaced create-before-destroy: the old version stays
# enabled until the runtimes point at the new one, so instances of the serving
# revision (which pin it) can still start meanwhile.
#
# Every secret is readable (roles/secretmanager.secretAccessor) by exactly the
# service accounts of the components that read it: iam.tf.

# --- Generated --------------------------------------------------------------

resource "google_secret_manager_secret" "db_url" {
  secret_id = "${var.name_prefix}-resonate-db-url"
  labels    = { component = "server" }

  replication {
    auto {}
  }

  depends_on = [google_project_service.apis]
}

resource "google_secret_manager_secret_version" "db_url" {
  secret = google_secret_manager_secret.db_url.id
  # Cloud SQL unix socket form: the host is the percent-encoded socket directory.
  # The password is the one google_sql_user.resonate gets in the same apply.
  secret_data_wo = format(
    "postgres://%s:%s@%s/%s",
    local.db_user,
    ephemeral.random_password.db.result,
    urlencode("/cloudsql/${google_sql_database_instance.resonate.connection_name}"),
    google_sql_database.resonate.name,
  )
  secret_data_wo_version = var.rotations.db_password

  lifecycle {
    create_before_destroy = true
  }
}

ephemeral "random_password" "signing_key" {
  # HITL_SIGNING_KEY: HMAC key of the emailed links (>= 32 bytes). Rotate by
  # raising rotations.signing_key (README.md).
  length  = 64
  special = false
}

resource "google_secret_manager_secret" "signing_key" {
  secret_id = "${var.name_prefix}-signing-key"
  labels    = { component = "links" }

  replication {
    auto {}
  }

  depends_on = [google_project_service.apis]
}

resource "google_secret_manager_secret_version" "signing_key" {
  secret                 = google_secret_manager_secret.signing_key.id
  secret_data_wo         = ephemeral.random_password.signing_key.result
  secret_data_wo_version = var.rotations.signing_key

  lifecycle {
    create_before_destroy = true
  }
}

ephemeral "random_password" "notify_webhook" {
  # HITL_NOTIFY_WEBHOOK_SECRET: signs the events the worker POSTs to webhook
  # channels (X-Hitl-Signature), so receivers can check they came from hitl.
  length  = 48
  special = false
}

resource "google_secret_manager_secret" "notify_webhook" {
  secret_id = "${var.name_prefix}-notify-webhook-secret"
  labels    = { component = "worker" }

  replication {
    auto {}
  }

  depends_on = [google_project_service.apis]
}

resource "google_secret_manager_secret_version" "notify_webhook" {
  secret                 = google_secret_manager_secret.notify_webhook.id
  secret_data_wo         = ephemeral.random_password.notify_webhook.result
  secret_data_wo_version = var.rotations.notify_webhook_secret

  lifecycle {
    create_before_destroy = true
  }
}

ephemeral "random_password" "webhook" {
  count = local.start_webhook ? 1 : 0

  length  = 48
  special = false
}

resource "google_secret_manager_secret" "webhook" {
  count = local.start_webhook ? 1 : 0

  secret_id = "${var.name_prefix}-webhook-secret"
  labels    = { component = "start" }

  replication {
    auto {}
  }

  depends_on = [google_project_service.apis]
}

resource "google_secret_manager_secret_version" "webhook" {
  count = local.start_webhook ? 1 : 0

  secret                 = google_secret_manager_secret.webhook[0].id
  secret_data_wo         = ephemeral.random_password.webhook[0].result
  secret_data_wo_version = var.rotations.webhook_secret

  lifecycle {
    create_before_destroy = true
  }
}

# The server's JWT public key: not secret, but Secret Manager is how Cloud Run
# mounts a file (RESONATE_AUTH__PUBLICKEY is a path).
resource "google_secret_manager_secret" "jwt_public_key" {
  secret_id = "${var.name_prefix}-resonate-jwt-public-key"
  labels    = { component = "server" }

  replication {
    auto {}
  }

  depends_on = [google_project_service.apis]
}

resource "google_secret_manager_secret_version" "jwt_public_key" {
  secret      = google_secret_manager_secret.jwt_public_key.id
  secret_data = var.resonate_jwt_public_key

  lifecycle {
    create_before_destroy = true
  }
}

# --- Made by the operator (README.md, "Before the first apply") -------------

locals {
  # Secret (after name_prefix-) -> the one component that reads it.
  operator_secrets = {
    resonate-token-start   = "start"
    resonate-token-unblock = "unblock"
    resonate-token-worker  = "worker"
    smtp-password          = "worker"
  }
}

data "google_secret_manager_secret" "operator" {
  for_each = local.operator_secrets

  secret_id = "${var.name_prefix}-${each.key}"
}
