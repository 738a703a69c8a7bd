output "url" {
  description = "HTTPS URL of the function."
  value       = google_cloudfunctions2_function.this.url
}

output "service" {
  description = "Cloud Run service behind the function (for gcloud and log filters)."
  value       = google_cloudfunctions2_function.this.service_config[0].service
}

output "location" {
  description = "Region of the function."
  value       = google_cloudfunctions2_function.this.location
}
