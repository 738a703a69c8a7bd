# The APIs the stack uses. Never disabled on destroy: other things in the
# project may rely on them.
locals {
  apis = toset([
    "artifactregistry.googleapis.com",
    "cloudbuild.googleapis.com",
    "cloudfunctions.googleapis.com",
    "cloudresourcemanager.googleapis.com",
    "iam.googleapis.com",
    "logging.googleapis.com",
    "run.googleapis.com",
    "secretmanager.googleapis.com",
    "sqladmin.googleapis.com",
    "storage.googleapis.com",
  ])

  # Only with approver sign-in: the load balancer and Identity-Aware Proxy (signin.tf).
  sign_in_apis = toset(["compute.googleapis.com", "iap.googleapis.com"])
}

resource "google_project_service" "apis" {
  for_each = var.approver_sign_in == "iap" ? setunion(local.apis, local.sign_in_apis) : local.apis

  project            = var.project_id
  service            = each.value
  disable_on_destroy = false
}
