# Artifact Registry: the worker image (pushed by Cloud Build, tagged with the
# commit SHA) and the images Cloud Functions builds from the functions bundle.

locals {
  image_repositories = {
    # A tag names one build forever: Terraform deploys the worker by tag.
    worker = {
      id             = var.artifact_repository
      description    = "hitl worker images, tagged with the commit SHA"
      immutable_tags = true
    }
    functions = {
      id             = "${var.artifact_repository}-functions"
      description    = "Images Cloud Functions builds for the hitl start and unblock functions"
      immutable_tags = false
    }
  }

  # Both repositories: keep the 10 most recent images, delete the rest after 30 days.
  image_cleanup = {
    keep-recent = { action = "KEEP", keep_count = 10, older_than = null }
    delete-old  = { action = "DELETE", keep_count = null, older_than = "2592000s" }
  }
}

resource "google_artifact_registry_repository" "images" {
  #checkov:skip=CKV_GCP_84:Google-managed encryption is enough for images built from this public source; a CMEK adds a KMS key to manage and pay for.
  for_each = local.image_repositories

  repository_id = each.value.id
  location      = var.region
  format        = "DOCKER"
  description   = each.value.description
  labels        = { component = each.key }

  docker_config {
    immutable_tags = each.value.immutable_tags
  }

  cleanup_policy_dry_run = false

  dynamic "cleanup_policies" {
    for_each = local.image_cleanup
    content {
      id     = cleanup_policies.key
      action = cleanup_policies.value.action

      dynamic "most_recent_versions" {
        for_each = cleanup_policies.value.keep_count == null ? [] : [cleanup_policies.value.keep_count]
        content {
          keep_count = most_recent_versions.value
        }
      }

      dynamic "condition" {
        for_each = cleanup_policies.value.older_than == null ? [] : [cleanup_policies.value.older_than]
        content {
          older_than = condition.value
        }
      }
    }
  }

  depends_on = [google_project_service.apis]
}

# Function sources: one object per bundle content (the name carries its hash),
# so a function is rebuilt exactly when the bundle changes.
resource "google_storage_bucket" "functions_source" {
  #checkov:skip=CKV_GCP_62:Access logs of a private bucket read only by Cloud Build are not worth a second bucket; Cloud Audit Logs record admin access.
  name                        = "${var.project_id}-${var.name_prefix}-functions-src"
  location                    = var.region
  uniform_bucket_level_access = true
  public_access_prevention    = "enforced"
  force_destroy               = !var.deletion_protection
  labels                      = { component = "functions" }

  versioning {
    enabled = true
  }

  lifecycle_rule {
    condition {
      age = 90
    }
    action {
      type = "Delete"
    }
  }

  lifecycle_rule {
    condition {
      num_newer_versions = 3
    }
    action {
      type = "Delete"
    }
  }

  depends_on = [google_project_service.apis]
}

resource "google_storage_bucket_object" "functions_bundle" {
  name   = "functions-${filesha256(var.functions_bundle)}.zip"
  bucket = google_storage_bucket.functions_source.name
  source = var.functions_bundle
}
