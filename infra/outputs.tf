# Names and URLs only: no output carries a secret value.

output "start_url" {
  description = "URL of the start function (HITL_START_URL for the e2e tests; callers POST approval requests here)."
  value       = module.function["start"].url
}

output "unblock_url" {
  description = "Where approvers reach unblock (HITL_UNBLOCK_URL; the emailed links point here): the function's URL, or with approver sign-in https://approver_domain/ (IAP's load balancer)."
  value       = local.unblock_public_url
}

output "approver_sign_in_address" {
  description = "With approver_sign_in = \"iap\": the load balancer's IP address; point approver_domain's DNS A record at it (null otherwise)."
  value       = local.sign_in ? google_compute_global_address.unblock[0].address : null
}

output "resonate_url" {
  description = "Public URL of the Resonate server (RESONATE_URL)."
  value       = google_cloud_run_v2_service.server.uri
}

output "server_service" {
  description = "Cloud Run service name of the Resonate server (for gcloud and log filters)."
  value       = google_cloud_run_v2_service.server.name
}

output "worker_service" {
  description = "Cloud Run service name of the worker (for gcloud and log filters)."
  value       = google_cloud_run_v2_service.worker.name
}

output "start_service" {
  description = "Cloud Run service behind the start function (for log filters)."
  value       = module.function["start"].service
}

output "unblock_service" {
  description = "Cloud Run service behind the unblock function (for log filters)."
  value       = module.function["unblock"].service
}

output "worker_image" {
  description = "Worker image deployed."
  value       = local.worker_image
}

output "database_instance" {
  description = "Cloud SQL connection name of the Resonate database."
  value       = google_sql_database_instance.resonate.connection_name
}

output "webhook_secret_name" {
  description = "Secret Manager secret holding the start webhook secret (null unless start_auth = \"webhook\"). Read it with gcloud; the value is never an output."
  value       = local.start_webhook ? google_secret_manager_secret.webhook[0].secret_id : null
}
