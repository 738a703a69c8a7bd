terraform {
  # 1.11+: write-only arguments (secret_data_wo, password_wo) and ephemeral
  # resources keep the generated secrets out of the plan and the state (1.9+
  # was already needed for validations that refer to other variables).
  required_version = ">= 1.11, < 2.0"

  required_providers {
    google = {
      source = "hashicorp/google"
      # 6.37+: write-only secret_data_wo and password_wo.
      version = "~> 6.37"
    }
    random = {
      source = "hashicorp/random"
      # 3.7+: ephemeral "random_password".
      version = "~> 3.7"
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
