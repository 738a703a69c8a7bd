# The platform's request log records each request's full URL, and an emailed link carries
# its signed token in the query string. hitl's own logs never contain a token; this keeps
# Cloud Run's request log for the unblock function from storing them either.
resource "google_logging_project_exclusion" "unblock_link_tokens" {
  name        = "${var.name_prefix}-unblock-link-tokens"
  description = "Drop request-log entries of the unblock function whose URL carries a link token."
  filter      = "resource.type=\"cloud_run_revision\" AND resource.labels.service_name=\"${local.unblock_name}\" AND httpRequest.requestUrl:\"token=\""

  depends_on = [google_project_service.apis]
}
