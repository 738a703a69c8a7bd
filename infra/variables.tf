# ---------------------------------------------------------------------------
# Project and naming
# ---------------------------------------------------------------------------

variable "project_id" {
  description = "ID of the Google Cloud project to deploy into."
  type        = string

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{4,28}[a-z0-9]$", var.project_id))
    error_message = "project_id must be a project ID (6-30 chars: lowercase letters, digits, hyphens; starts with a letter)."
  }
}

variable "region" {
  description = "Region for every regional resource (Cloud Run, Cloud SQL, Artifact Registry, function sources), e.g. europe-west1."
  type        = string
  default     = "europe-west1"

  validation {
    condition     = can(regex("^[a-z]+(-[a-z]+)+[0-9]+$", var.region))
    error_message = "region must be a Google Cloud region name such as europe-west1 or us-central1 (not a zone)."
  }
}

variable "name_prefix" {
  description = "Prefix of every resource name (services, functions, secrets, service accounts, the database instance)."
  type        = string
  default     = "hitl"

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{0,13}[a-z0-9]$", var.name_prefix))
    error_message = "name_prefix must be 2-15 chars of lowercase letters, digits and hyphens, starting with a letter (service account IDs are at most 30 chars)."
  }
}

variable "labels" {
  description = "Extra labels put on every resource that takes labels (merged over app=hitl, managed-by=terraform)."
  type        = map(string)
  default     = {}
}

variable "deletion_protection" {
  description = "Protect the database instance and the Cloud Run services from `terraform destroy`. Turn off only to tear a test stack down."
  type        = bool
  default     = true
}

variable "rotations" {
  description = "Generation of each secret Terraform generates. Its value is write-only (never in the state), so Terraform writes a new random one exactly when its number grows: raise one by 1 to rotate that secret (README.md, \"Rotating secrets\")."
  type = object({
    db_password           = optional(number, 1)
    signing_key           = optional(number, 1)
    notify_webhook_secret = optional(number, 1)
    webhook_secret        = optional(number, 1)
  })
  default = {}

  validation {
    condition     = alltrue([for n in values(var.rotations) : n >= 1 && floor(n) == n])
    error_message = "Every rotations entry must be a whole number >= 1 (raise it by 1 to rotate)."
  }
}

# ---------------------------------------------------------------------------
# Resonate server
# ---------------------------------------------------------------------------

variable "resonate_image" {
  description = "Resonate server image, pinned: REPO:TAG, REPO@sha256:DIGEST or REPO:TAG@sha256:DIGEST (README.md, \"Pinning the server image\"). Needs v0.10.0 or later: the first release with the SDK's `<origin>:<lineage>` ids."
  type        = string
  default     = "docker.io/resonatehqio/resonate:v0.10.0"

  validation {
    condition     = can(regex("^[a-z0-9][a-z0-9.-]*(:[0-9]+)?(/[a-z0-9._-]+)+(:[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})?(@sha256:[a-f0-9]{64})?$", var.resonate_image))
    error_message = "resonate_image must be an image reference: [REGISTRY/]REPO[:TAG][@sha256:DIGEST]."
  }

  validation {
    condition     = can(regex("(:[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}|@sha256:[a-f0-9]{64})$", var.resonate_image))
    error_message = "resonate_image must end with a tag (:v0.10.0) or a digest (@sha256:<64 hex>), or carry both (:v0.10.0@sha256:...)."
  }

  validation {
    condition     = !can(regex(":(latest|dev|main)$", var.resonate_image))
    error_message = "resonate_image must be pinned: not :latest, :dev or :main (a digest after the tag pins it: :latest@sha256:...)."
  }

  validation {
    # Releases before v0.10.0 split ids on "." and reject the SDK's "<origin>:<lineage>" ids
    # (resonatehq/resonate PR #1127, released in v0.10.0; v0.9.9 was never published).
    condition     = !can(regex(":v?0\\.[0-9]\\.[0-9]+([-+][A-Za-z0-9.-]*)?(@|$)", var.resonate_image))
    error_message = "resonate_image must be v0.10.0 or later: earlier servers do not accept the SDK's <origin>:<lineage> ids."
  }
}

variable "resonate_jwt_public_key" {
  description = "PEM public key (RSA, EC P-256/P-384 or Ed25519) the server verifies Resonate JWTs with. Public, not a secret; the private key never comes near Terraform (see README.md)."
  type        = string

  validation {
    condition     = can(regex("^-----BEGIN PUBLIC KEY-----\\n[A-Za-z0-9+/=\\n]+-----END PUBLIC KEY-----\\n?$", var.resonate_jwt_public_key))
    error_message = "resonate_jwt_public_key must be a PEM \"PUBLIC KEY\" block (openssl pkey -pubout)."
  }
}

variable "resonate_pool_size" {
  description = "Postgres connection pool size of the Resonate server. Two instances overlap during a deploy: keep twice this under the tier's max_connections (db-f1-micro: 25, 3 reserved)."
  type        = number
  default     = 10

  validation {
    condition     = var.resonate_pool_size >= 1 && var.resonate_pool_size <= 100 && floor(var.resonate_pool_size) == var.resonate_pool_size
    error_message = "resonate_pool_size must be an integer from 1 to 100."
  }

  validation {
    # During a deploy the old and the new server instance each hold a pool.
    # db-f1-micro allows 25 connections, 3 of them reserved for superusers.
    condition     = var.db_tier != "db-f1-micro" || 2 * var.resonate_pool_size <= 22
    error_message = "With db_tier = \"db-f1-micro\" (25 connections), resonate_pool_size must be at most 11: two server instances overlap during a deploy."
  }
}

variable "server_cpu" {
  description = "vCPUs of the Resonate server instance (always allocated)."
  type        = string
  default     = "1"

  validation {
    condition     = contains(["1", "2", "4"], var.server_cpu)
    error_message = "server_cpu must be 1, 2 or 4 (CPU always allocated needs at least 1)."
  }
}

variable "server_memory" {
  description = "Memory of the Resonate server instance, e.g. 512Mi or 1Gi."
  type        = string
  default     = "512Mi"

  validation {
    condition     = can(regex("^[0-9]+(Mi|Gi)$", var.server_memory))
    error_message = "server_memory must look like 512Mi or 1Gi."
  }
}

# ---------------------------------------------------------------------------
# Database
# ---------------------------------------------------------------------------

variable "db_tier" {
  description = "Cloud SQL machine tier (db-f1-micro is the smallest; db-custom-1-3840 for a dedicated core)."
  type        = string
  default     = "db-f1-micro"

  validation {
    # The instance's edition is ENTERPRISE (database.tf): Enterprise Plus tiers
    # (db-perf-optimized-N-*) would be refused by the API at apply time.
    condition     = can(regex("^db-(f1-micro|g1-small|custom-[0-9]+-[0-9]+)$", var.db_tier))
    error_message = "db_tier must be a Cloud SQL Enterprise edition tier for Postgres: db-f1-micro, db-g1-small or db-custom-CPUS-MEMORY_MB (Enterprise Plus db-perf-optimized-N-* tiers do not fit the ENTERPRISE edition)."
  }
}

variable "db_version" {
  description = "Cloud SQL Postgres major version."
  type        = string
  default     = "POSTGRES_17"

  validation {
    condition     = can(regex("^POSTGRES_1[4-8]$", var.db_version))
    error_message = "db_version must be POSTGRES_14 to POSTGRES_18."
  }
}

variable "db_availability_type" {
  description = "ZONAL (one zone, cheapest) or REGIONAL (high availability, about twice the price)."
  type        = string
  default     = "ZONAL"

  validation {
    condition     = contains(["ZONAL", "REGIONAL"], var.db_availability_type)
    error_message = "db_availability_type must be ZONAL or REGIONAL."
  }
}

variable "db_disk_size_gb" {
  description = "Initial SSD size of the database in GB (grows automatically)."
  type        = number
  default     = 10

  validation {
    condition     = var.db_disk_size_gb >= 10
    error_message = "db_disk_size_gb must be at least 10."
  }
}

# ---------------------------------------------------------------------------
# Worker
# ---------------------------------------------------------------------------

variable "artifact_repository" {
  description = "Artifact Registry repository (Docker) the worker image is pushed to; must match Cloud Build's _REPOSITORY."
  type        = string
  default     = "hitl"

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{0,61}[a-z0-9]$", var.artifact_repository))
    error_message = "artifact_repository must be lowercase letters, digits and hyphens, starting with a letter."
  }
}

variable "worker_image_tag" {
  description = "Tag of the worker image in the repository (Cloud Build passes the commit SHA)."
  type        = string

  validation {
    condition     = can(regex("^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$", var.worker_image_tag))
    error_message = "worker_image_tag must be a Docker tag (letters, digits, _ . -; at most 128 chars)."
  }

  validation {
    condition     = !contains(["latest", "dev", "main"], var.worker_image_tag)
    error_message = "worker_image_tag must name one build (e.g. the commit SHA), not a moving tag like latest."
  }
}

variable "worker_min_instances" {
  description = "Worker instances kept running (at least 1: the worker holds the SSE stream the server pushes tasks on)."
  type        = number
  default     = 1

  validation {
    condition     = var.worker_min_instances >= 1 && floor(var.worker_min_instances) == var.worker_min_instances
    error_message = "worker_min_instances must be an integer >= 1."
  }
}

variable "worker_max_instances" {
  description = "Upper bound on worker instances."
  type        = number
  default     = 2

  validation {
    condition     = var.worker_max_instances >= var.worker_min_instances && var.worker_max_instances <= 100
    error_message = "worker_max_instances must be between worker_min_instances and 100."
  }
}

variable "worker_group" {
  description = "Worker group approvals run on (HITL_WORKER_GROUP; poll://any@<group>). Lowercase."
  type        = string
  default     = "worker"

  validation {
    condition     = can(regex("^[a-z0-9][a-z0-9_-]{0,62}$", var.worker_group))
    error_message = "worker_group must be lowercase ASCII letters, digits, _ and -."
  }
}

variable "worker_task_ttl" {
  description = "Task lease in seconds (HITL_TASK_TTL); the SDK heartbeats at half of it."
  type        = number
  default     = 60

  validation {
    condition     = var.worker_task_ttl > 1 && var.worker_task_ttl <= 3600
    error_message = "worker_task_ttl must be greater than 1 and at most 3600 seconds."
  }
}

variable "worker_sse_timeout" {
  description = "Longest life of one SSE poll connection in seconds (HITL_SSE_TIMEOUT). Must stay under 300: the SDK's HTTP session gives up at 300 s."
  type        = number
  default     = 240

  validation {
    condition     = var.worker_sse_timeout > 0 && var.worker_sse_timeout < 300
    error_message = "worker_sse_timeout must be between 0 and 300 seconds (exclusive)."
  }
}

# ---------------------------------------------------------------------------
# Slack and webhook notifications (start validates, the worker posts)
# ---------------------------------------------------------------------------

variable "slack_allowed_hosts" {
  description = "Hosts Slack incoming-webhook URLs in requests may point at (HITL_SLACK_ALLOWED_HOSTS, comma-separated; '.example.com' allows subdomains)."
  type        = string
  default     = "hooks.slack.com"
}

variable "webhook_allowed_hosts" {
  description = "Hosts plain JSON webhook URLs in requests may point at (HITL_WEBHOOK_ALLOWED_HOSTS). Empty refuses every webhook URL."
  type        = string
  default     = ""
}

variable "notify_timeout" {
  description = "Seconds one Slack or webhook POST may take (HITL_NOTIFY_TIMEOUT)."
  type        = number
  default     = 10

  validation {
    condition     = var.notify_timeout > 0 && var.notify_timeout <= 60
    error_message = "notify_timeout must be between 0 (exclusive) and 60 seconds."
  }
}

variable "delivery_retry_for" {
  description = "Seconds the worker keeps retrying the delivery of a decision to a caller's webhook or promise (HITL_DELIVERY_RETRY_FOR)."
  type        = number
  default     = 86400

  validation {
    condition     = var.delivery_retry_for >= 60 && var.delivery_retry_for <= 2592000 && floor(var.delivery_retry_for) == var.delivery_retry_for
    error_message = "delivery_retry_for must be a whole number of seconds from 60 (one minute) to 2592000 (30 days)."
  }
}

# ---------------------------------------------------------------------------
# Email (worker)
# ---------------------------------------------------------------------------

variable "smtp_host" {
  description = "SMTP relay host the worker sends approval emails through (e.g. smtp.sendgrid.net)."
  type        = string

  validation {
    condition     = can(regex("^[A-Za-z0-9.-]+$", var.smtp_host))
    error_message = "smtp_host must be a host name."
  }
}

variable "smtp_port" {
  description = "SMTP port: 587 (starttls) or 465 (tls). Cloud Run blocks outbound port 25."
  type        = number
  default     = 587

  validation {
    condition     = var.smtp_port > 0 && var.smtp_port < 65536 && var.smtp_port != 25
    error_message = "smtp_port must be a TCP port other than 25 (blocked on Cloud Run)."
  }
}

variable "smtp_security" {
  description = "SMTP transport security: starttls, tls or none."
  type        = string
  default     = "starttls"

  validation {
    condition     = contains(["starttls", "tls", "none"], var.smtp_security)
    error_message = "smtp_security must be starttls, tls or none."
  }
}

variable "smtp_username" {
  description = "SMTP user name. The password is the Secret Manager secret <name_prefix>-smtp-password (see README.md)."
  type        = string

  validation {
    condition     = length(var.smtp_username) > 0
    error_message = "smtp_username must not be empty."
  }
}

variable "smtp_from" {
  description = "Sender address of approval emails."
  type        = string

  validation {
    condition     = can(regex("^[^@\\s]+@[^@\\s]+\\.[^@\\s]+$", var.smtp_from))
    error_message = "smtp_from must be an email address."
  }
}

# ---------------------------------------------------------------------------
# Functions
# ---------------------------------------------------------------------------

variable "functions_bundle" {
  description = "Path of the functions source zip made by `python scripts/bundle_functions.py --out PATH`."
  type        = string
  default     = "../build/functions.zip"

  validation {
    condition     = endswith(var.functions_bundle, ".zip")
    error_message = "functions_bundle must be the path of a .zip file."
  }
}

variable "start_auth" {
  description = "How callers of `start` authenticate: \"iam\" (only start_invokers may invoke it) or \"webhook\" (public; every POST carries an HMAC-SHA256 X-Hitl-Signature made with the webhook secret)."
  type        = string
  default     = "iam"

  validation {
    condition     = contains(["iam", "webhook"], var.start_auth)
    error_message = "start_auth must be iam or webhook."
  }
}

variable "start_invokers" {
  description = "Principals allowed to invoke `start` when start_auth = \"iam\", e.g. [\"serviceAccount:ci@PROJECT.iam.gserviceaccount.com\"]. Include the Cloud Build service account for the smoke test."
  type        = list(string)
  default     = []

  validation {
    condition = alltrue([
      for m in var.start_invokers : can(regex("^(user|serviceAccount|group|domain|principal|principalSet):.+$", m))
    ])
    error_message = "start_invokers must be IAM principals (user:, serviceAccount:, group:, domain:, principal:, principalSet:); use start_auth = \"webhook\" for a public start."
  }

  validation {
    condition     = var.start_auth != "iam" || length(var.start_invokers) > 0
    error_message = "start_auth = \"iam\" needs at least one principal in start_invokers (e.g. the deployer service account, for the smoke test): with none, nobody can call start."
  }
}

variable "server_timeout" {
  description = "Seconds a function waits on the Resonate server before answering 503 (HITL_SERVER_TIMEOUT)."
  type        = number
  default     = 5

  validation {
    condition     = var.server_timeout > 0 && var.server_timeout <= 60
    error_message = "server_timeout must be greater than 0 and at most 60 seconds."
  }
}

variable "functions_max_instances" {
  description = "Upper bound on instances of each function."
  type        = number
  default     = 10

  validation {
    condition     = var.functions_max_instances >= 1 && var.functions_max_instances <= 1000
    error_message = "functions_max_instances must be between 1 and 1000."
  }
}

variable "log_format" {
  description = "Log format of every component (HITL_LOG_FORMAT): json for Cloud Logging, text for reading by eye."
  type        = string
  default     = "json"

  validation {
    condition     = contains(["json", "text"], var.log_format)
    error_message = "log_format must be json or text."
  }
}

# --- Approver sign-in (signin.tf) ---------------------------------------------

variable "approver_sign_in" {
  description = "How approvers are identified: \"none\" (their signed link alone, as before) or \"iap\" (they also sign in with their Google account through Identity-Aware Proxy, in front of unblock; infra/README.md, \"Approver sign-in\")."
  type        = string
  default     = "none"

  validation {
    condition     = contains(["none", "iap"], var.approver_sign_in)
    error_message = "approver_sign_in must be none or iap."
  }
}

variable "approver_domain" {
  description = "With approver_sign_in = \"iap\": the host name approvers reach unblock at (its HTTPS load balancer's certificate is issued for it; point its DNS A record at the address output approver_sign_in_address)."
  type        = string
  default     = ""

  validation {
    condition     = var.approver_sign_in != "iap" || can(regex("^([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\\.)+[a-z]{2,63}$", var.approver_domain))
    error_message = "approver_sign_in = \"iap\" needs approver_domain: a lowercase host name such as approvals.example.com."
  }
}

variable "approver_principals" {
  description = "With approver_sign_in = \"iap\": who may sign in to unblock (roles/iap.httpsResourceAccessor): e.g. [\"group:approvers@example.com\", \"domain:example.com\", \"user:alice@example.com\"]. Each must also be the approver a link names (or an alias of them)."
  type        = list(string)
  default     = []

  validation {
    condition     = alltrue([for m in var.approver_principals : can(regex("^(user|group|domain|serviceAccount|principal|principalSet):.+$", m))])
    error_message = "approver_principals must be IAM principals (user:, group:, domain:, serviceAccount:, principal:, principalSet:)."
  }

  validation {
    condition     = var.approver_sign_in != "iap" || length(var.approver_principals) > 0
    error_message = "approver_sign_in = \"iap\" needs at least one principal in approver_principals: with none, nobody can sign in."
  }
}

variable "approver_aliases" {
  description = "Approvers' other addresses (HITL_APPROVER_ALIASES): groups like \"alice@example.com=alice@corp.example.com\", separated by spaces; a person signed in with any address of a group is that approver."
  type        = string
  default     = ""

  validation {
    condition     = alltrue([for g in split(" ", var.approver_aliases) : g == "" || can(regex("^[^=@\\s]+@[^=@\\s]+(=[^=@\\s]+@[^=@\\s]+)+$", g))])
    error_message = "approver_aliases must be groups of addresses joined by '=', separated by spaces."
  }
}
