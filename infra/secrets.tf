# Secrets. Two kinds:
#
# * Generated here (random_password) and stored as secret versions: the
#   database URL, the link signing key and, in webhook mode, the webhook
#   secret. Their values live in Secret Manager and in the Terraform state
#   (keep the state bucket private). Runtimes pin the version Terraform
#   wrote, so replacing a value rolls out new revisions in the same apply.
# * Made by the operator before the first apply and only *referenced* here
#   (data sources), so their values never reach the state: the Resonate JWTs
#   (one per component) and the SMTP password. See README.md.
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
  secret_data = format(
    "postgres://%s:%s@%s/%s",
    google_sql_user.resonate.name,
    random_password.db.result,
    urlencode("/cloudsql/${google_sql_database_instance.resonate.connection_name}"),
    google_sql_database.resonate.name,
  )
}

resource "random_password" "signing_key" {
  # HITL_SIGNING_KEY: HMAC key of the emailed links (>= 32 bytes). Rotate with
  # `terraform apply -replace=random_password.signing_key` (README.md).
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
  secret      = google_secret_manager_secret.signing_key.id
  secret_data = random_password.signing_key.result
}

resource "random_password" "notify_webhook" {
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
  secret      = google_secret_manager_secret.notify_webhook.id
  secret_data = random_password.notify_webhook.result
}

resource "random_password" "webhook" {
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

  secret      = google_secret_manager_secret.webhook[0].id
  secret_data = random_password.webhook[0].result
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
}

# --- Made by the operator (README.md, "Before the first apply") -------------

data "google_secret_manager_secret" "resonate_token_start" {
  secret_id = "${var.name_prefix}-resonate-token-start"
}

data "google_secret_manager_secret" "resonate_token_unblock" {
  secret_id = "${var.name_prefix}-resonate-token-unblock"
}

data "google_secret_manager_secret" "resonate_token_worker" {
  secret_id = "${var.name_prefix}-resonate-token-worker"
}

data "google_secret_manager_secret" "smtp_password" {
  secret_id = "${var.name_prefix}-smtp-password"
}
