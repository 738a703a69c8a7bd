variable "project_id" {
  description = "Project of the function and of the secrets it reads."
  type        = string
}

variable "region" {
  description = "Region of the function."
  type        = string
}

variable "name" {
  description = "Function name (also the name of the Cloud Run service behind it)."
  type        = string

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{0,48}[a-z0-9]$", var.name))
    error_message = "name must be lowercase letters, digits and hyphens, starting with a letter (at most 50 chars)."
  }
}

variable "entry_point" {
  description = "Function in the bundle's main.py to run (functions/main.py)."
  type        = string

  validation {
    condition     = can(regex("^[A-Za-z_][A-Za-z0-9_]*$", var.entry_point))
    error_message = "entry_point must be a Python identifier."
  }
}

variable "description" {
  description = "What the function does."
  type        = string
}

variable "labels" {
  description = "Labels of the function."
  type        = map(string)
  default     = {}
}

variable "bundle" {
  description = "The source zip in Cloud Storage (scripts/bundle_functions.py)."
  type = object({
    bucket = string
    object = string
  })
}

variable "build" {
  description = "How Cloud Build builds the function: its service account and the Docker repository the image goes to."
  type = object({
    service_account   = string
    docker_repository = string
  })
}

variable "runtime" {
  description = "The running service: its service account, scaling, size and request timeout."
  type = object({
    service_account_email = string
    max_instances         = number
    timeout_seconds       = number
    cpu                   = optional(string, "1")
    memory                = optional(string, "512Mi")
    concurrency           = optional(number, 40)
  })

  validation {
    condition     = var.runtime.timeout_seconds >= 1 && var.runtime.timeout_seconds <= 3600
    error_message = "runtime.timeout_seconds must be between 1 and 3600 (the HTTP function limit)."
  }

  validation {
    condition     = var.runtime.max_instances >= 1 && var.runtime.concurrency >= 1 && var.runtime.concurrency <= 1000
    error_message = "runtime.max_instances must be at least 1 and runtime.concurrency between 1 and 1000."
  }
}

variable "env" {
  description = "Plain environment variables (never a secret)."
  type        = map(string)
  default     = {}
}

variable "secret_env" {
  description = "Environment variables read from Secret Manager: secret id and version; entries with enabled = false are left out."
  type = map(object({
    secret  = string
    version = string
    enabled = optional(bool, true)
  }))
  default = {}

  validation {
    condition     = length(setintersection(keys(var.secret_env), keys(var.env))) == 0
    error_message = "A variable cannot be both in env and in secret_env."
  }
}

variable "ingress" {
  description = "Where requests may come from: ALLOW_ALL, or ALLOW_INTERNAL_AND_GCLB (a load balancer in front, e.g. Identity-Aware Proxy's)."
  type        = string
  default     = "ALLOW_ALL"

  validation {
    condition     = contains(["ALLOW_ALL", "ALLOW_INTERNAL_ONLY", "ALLOW_INTERNAL_AND_GCLB"], var.ingress)
    error_message = "ingress must be ALLOW_ALL, ALLOW_INTERNAL_ONLY or ALLOW_INTERNAL_AND_GCLB."
  }
}

variable "invokers" {
  description = "Principals given roles/run.invoker on the function's service (\"allUsers\" makes it public)."
  type        = list(string)

  validation {
    condition     = length(var.invokers) > 0
    error_message = "invokers must name at least one principal: a function nobody may invoke is of no use."
  }
}
