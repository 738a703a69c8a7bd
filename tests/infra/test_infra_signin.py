"""Approver sign-in in Terraform (infra/signin.tf): unblock behind a load balancer with IAP,
reachable by no other way, its assertions' audience given to unblock, the links pointing there."""

from __future__ import annotations

from infra_helpers import Terraform, component_env, expr

SIGN_IN_RESOURCES = (
    "google_compute_region_network_endpoint_group.unblock",
    "google_compute_backend_service.unblock",
    "google_compute_url_map.unblock",
    "google_compute_managed_ssl_certificate.unblock",
    "google_compute_ssl_policy.unblock",
    "google_compute_target_https_proxy.unblock",
    "google_compute_global_address.unblock",
    "google_compute_global_forwarding_rule.unblock",
)


def test_the_load_balancer_exists_only_with_sign_in(tf: Terraform) -> None:
    for address in SIGN_IN_RESOURCES:
        assert expr(tf.block(address)["count"]) == "local.sign_in ? 1 : 0", address
    members = tf.block("google_iap_web_backend_service_iam_member.approvers")
    assert expr(members["for_each"]) == "local.sign_in ? toset(var.approver_principals) : toset([])"
    assert members["role"] == "roles/iap.httpsResourceAccessor"


def test_iap_guards_the_backend_of_the_unblock_function(tf: Terraform) -> None:
    neg = tf.block("google_compute_region_network_endpoint_group.unblock")
    assert neg["network_endpoint_type"] == "SERVERLESS"
    assert expr(neg["cloud_function"][0]["function"]) == "local.unblock_name"
    assert expr(tf.locals["functions"]["unblock"]["name"]) == "local.unblock_name"
    backend = tf.block("google_compute_backend_service.unblock")
    assert backend["iap"][0]["enabled"] is True
    assert expr(backend["backend"][0]["group"]) == "google_compute_region_network_endpoint_group.unblock[0].id"
    proxy = tf.block("google_compute_target_https_proxy.unblock")
    assert expr(proxy["ssl_policy"]) == "google_compute_ssl_policy.unblock[0].id"
    assert tf.block("google_compute_ssl_policy.unblock")["min_tls_version"] == "TLS_1_2"
    assert tf.block("google_compute_global_forwarding_rule.unblock")["port_range"] == "443"
    # the identity IAP calls the function with: its service agent, the only invoker then
    assert expr(tf.local("iap_agent")) == (
        "serviceAccount:service-${data.google_project.this.number}@gcp-sa-iap.iam.gserviceaccount.com"
    )


def test_unblock_checks_the_audience_of_this_backend_and_the_links_point_at_the_load_balancer(tf: Terraform) -> None:
    env = component_env(tf, "unblock")
    assert expr(env["HITL_SIGN_IN"].value) == "var.approver_sign_in"
    assert expr(env["HITL_IAP_AUDIENCE"].value) == "local.iap_audience"
    assert "/global/backendServices/${google_compute_backend_service.unblock[0].generated_id}" in expr(
        tf.local("iap_audience")
    )
    assert env["HITL_IAP_KEYS_URL"].value == "https://www.gstatic.com/iap/verify/public_key-jwk"
    assert expr(env["HITL_APPROVER_ALIASES"].value) == "var.approver_aliases"
    for component in ("start", "worker"):
        assert expr(component_env(tf, component)["HITL_SIGN_IN"].value) == "var.approver_sign_in"
    assert expr(component_env(tf, "worker")["HITL_UNBLOCK_URL"].value) == "local.unblock_public_url"
    assert expr(tf.local("unblock_public_url")) == (
        'local.sign_in ? "https://${var.approver_domain}/" : module.function["unblock"].url'
    )
    assert expr(tf.outputs["unblock_url"]["value"]) == "local.unblock_public_url"


def test_sign_in_needs_a_domain_and_someone_allowed(tf: Terraform) -> None:
    for name in ("approver_domain", "approver_principals"):
        conditions = [expr(v["condition"]) for v in tf.variables[name]["validation"]]
        assert any('var.approver_sign_in != "iap"' in c for c in conditions), name
