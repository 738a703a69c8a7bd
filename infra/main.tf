data "google_project" "this" {
  project_id = var.project_id
}

locals {
  labels = merge({ app = "hitl", managed-by = "terraform" }, var.labels)

  server_name  = "${var.name_prefix}-resonate"
  worker_name  = "${var.name_prefix}-worker"
  start_name   = "${var.name_prefix}-start"
  unblock_name = "${var.name_prefix}-unblock"

  # The server's own public URL, known before it exists (Cloud Run's
  # deterministic URL), so RESONATE_SERVER__URL needs no second apply.
  server_url = "https://${local.server_name}-${data.google_project.this.number}.${var.region}.run.app"

  # Cloud Build pushes exactly this reference (cloudbuild.yaml); tests/infra checks both agree.
  worker_image = "${var.region}-docker.pkg.dev/${var.project_id}/${google_artifact_registry_repository.images["worker"].repository_id}/worker:${var.worker_image_tag}"

  start_webhook = var.start_auth == "webhook"
}
