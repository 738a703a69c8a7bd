terraform {
  # 1.9+ for validations that refer to other variables.
  required_version = ">= 1.9, < 2.0"

  required_providers {
    google = {
      source  = "hashicorp/google"
      version = "~> 6.0"
    }
    random = {
      source  = "hashicorp/random"
      version = "~> 3.6"
    }
  }

  # Partial configuration: `terraform init -backend-config=bucket=STATE_BUCKET`
  # (Cloud Build passes ${_STATE_BUCKET}; see README.md).
  backend "gcs" {
    prefix = "hitl"
  }
}

provider "google" {
  project = var.project_id
  region  = var.region

  default_labels = local.labels
}
