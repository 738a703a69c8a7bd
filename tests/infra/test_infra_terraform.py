"""The Terraform in infra/ against the code's contract: env vars, secrets, IAM, ports, probes."""

from __future__ import annotations

import re
import subprocess

import hcl2
import pytest
from infra_helpers import (
    COMPONENT_RESOURCES,
    FUNCTION_MODULE,
    FUNCTION_RESOURCE,
    ROOT,
    Terraform,
    address,
    component_env,
    component_secrets,
    component_service_account,
    expr,
    hcl_string,
    members_service_accounts,
    unquote,
)

from hitl.settings import ENV_VARS, SECRET_VARS, WorkerSettings

APP_PREFIXES = ("HITL_", "RESONATE_", "SMTP_")
#: Set by Cloud Run itself (from the container port); it rejects a PORT env entry.
PLATFORM_VARS = {"worker": {"PORT"}}


# --- environment ----------------------------------------------------------------------


@pytest.mark.parametrize("component", ["start", "unblock", "worker"])
def test_each_component_gets_exactly_the_env_vars_it_reads(tf: Terraform, component: str) -> None:
    env = component_env(tf, component)
    expected = set(ENV_VARS[component]) - PLATFORM_VARS.get(component, set())
    assert set(env) >= expected, f"{component} misses {sorted(expected - set(env))}"
    extra = set(env) - expected
    assert not extra, f"{component} gets variables it does not read: {sorted(extra)}"
    assert not [n for n in extra if n.startswith(APP_PREFIXES)]


@pytest.mark.parametrize("component", ["start", "unblock", "worker"])
def test_secret_vars_come_from_secret_manager_and_nothing_else_does(tf: Terraform, component: str) -> None:
    for name, env in component_env(tf, component).items():
        if name in SECRET_VARS:
            assert env.secret and env.value is None, f"{component}: {name} must come from Secret Manager"
        else:
            assert env.secret is None, f"{component}: {name} is not a secret"


@pytest.mark.parametrize("component", ["start", "unblock", "worker"])
def test_google_cloud_project_is_the_project_id(tf: Terraform, component: str) -> None:
    assert expr(component_env(tf, component)["GOOGLE_CLOUD_PROJECT"].value) == "var.project_id"


def test_delivery_retry_comes_from_a_validated_variable_with_the_code_default(tf: Terraform) -> None:
    env = component_env(tf, "worker")["HITL_DELIVERY_RETRY_FOR"]
    assert expr(env.value) == "tostring(var.delivery_retry_for)"
    var = tf.variables["delivery_retry_for"]
    assert var["type"] == "${number}" or var["type"] == "number"
    default = WorkerSettings.__dataclass_fields__["delivery_retry_for"].default
    assert var["default"] == default.total_seconds() == 86400
    assert var.get("validation"), "delivery_retry_for needs a validation"


def test_webhook_secret_is_set_only_in_webhook_mode(tf: Terraform) -> None:
    env = component_env(tf, "start")["HITL_WEBHOOK_SECRET"]
    assert env.conditional
    spec = tf.block(COMPONENT_RESOURCES["start"])["secret_env"]["HITL_WEBHOOK_SECRET"]
    assert expr(spec["enabled"]) == "local.start_webhook"
    assert expr(tf.local("start_webhook")) == 'var.start_auth == "webhook"'
    assert "enabled" not in tf.block(COMPONENT_RESOURCES["unblock"])["secret_env"]["HITL_SIGNING_KEY"]


def test_function_module_passes_its_env_through(tf: Terraform) -> None:
    """component_env reads the module instances' inputs: the module must deploy exactly those."""
    module = tf.child(FUNCTION_MODULE)
    service = module.resources[FUNCTION_RESOURCE]["service_config"][0]
    assert expr(service["environment_variables"]) == "var.env"
    (dyn,) = service["dynamic"]
    spec = dyn["secret_environment_variables"]
    assert expr(spec["for_each"]) == "local.secret_env"
    assert expr(module.local("secret_env")) == "{for key, s in var.secret_env : key => s if s.enabled}"
    (content,) = spec["content"]
    assert expr(content["key"]) == "secret_environment_variables.key"
    assert expr(content["secret"]) == "secret_environment_variables.value.secret"
    assert expr(content["version"]) == "secret_environment_variables.value.version"
    assert "secret_environment_variables" not in service, "a secret set outside secret_env"
    assert expr(service["service_account_email"]) == "var.runtime.service_account_email"
    assert expr(module.variables["secret_env"]["type"]).startswith("map(object(")


def test_module_calls_name_only_declared_inputs_and_every_required_one(tf: Terraform) -> None:
    """terraform validate cannot run here (no provider); this is its check of module arguments."""
    assert tf.modules
    for name, call in tf.modules.items():
        module = tf.child(name)
        given = set(call) - {"source", "for_each", "count", "depends_on", "providers"}
        assert given <= set(module.variables), f"module.{name}: unknown inputs {sorted(given - set(module.variables))}"
        required = {v for v, spec in module.variables.items() if "default" not in spec}
        assert required <= given, f"module.{name}: missing {sorted(required - given)}"
        keys = tf.locals[expr(call["for_each"]).removeprefix("local.")] if "for_each" in call else [None]
        for key in keys:
            inputs = tf.module_inputs(name, key)
            for var in ("bundle", "build", "runtime"):
                typ = expr(module.variables[var]["type"])
                declared = set(re.findall(r"([a-z_]+)\s*=", typ))
                mandatory = {a for a in declared if not re.search(rf"\b{a}\s*=\s*optional\(", typ)}
                assert mandatory <= set(inputs[var]), (
                    f"module.{name}[{key}].{var} misses {mandatory - set(inputs[var])}"
                )
                assert set(inputs[var]) <= declared, f"module.{name}[{key}].{var}: unknown attributes"


def test_worker_port_is_platform_port_matching_code_and_dockerfile(tf: Terraform) -> None:
    worker = tf.block(COMPONENT_RESOURCES["worker"])
    (container,) = worker["template"][0]["containers"]
    port = tf.resolve(container["ports"][0]["container_port"])
    default = WorkerSettings.__dataclass_fields__["port"].default
    assert "PORT" in ENV_VARS["worker"]
    assert port == default == 8080
    exposed = re.findall(r"^EXPOSE\s+(\d+)", (ROOT / "worker" / "Dockerfile").read_text(), re.M)
    assert exposed == [str(port)]


def test_worker_probes_hit_its_port_startup_waits_for_the_stream(tf: Terraform) -> None:
    worker = tf.block(COMPONENT_RESOURCES["worker"])
    (container,) = worker["template"][0]["containers"]
    port = tf.resolve(container["ports"][0]["container_port"])
    paths = {}
    for probe in ("startup_probe", "liveness_probe"):
        get = container[probe][0]["http_get"][0]
        paths[probe] = tf.resolve(get["path"])
        assert tf.resolve(get["port"]) == port
    # Startup: ready only with its SSE stream open (a new revision must reach the server it
    # replaces the old one's stream on); liveness: the process answers.
    assert paths == {"startup_probe": "/ready", "liveness_probe": "/health"}
    source = (ROOT / "worker" / "main.py").read_text()
    for path in paths.values():
        assert re.search(rf"""add_get\(["']{path}["']""", source), f"worker/main.py serves no {path} route"
    assert re.search(r"status=200 if source\.connected\.is_set\(\) else 503", source), "/ready must need the stream"


def test_worker_runs_always_internal_with_cpu(tf: Terraform) -> None:
    worker = tf.block(COMPONENT_RESOURCES["worker"])
    assert worker["ingress"] == "INGRESS_TRAFFIC_INTERNAL_ONLY"
    template = worker["template"][0]
    assert expr(template["scaling"][0]["min_instance_count"]) == "var.worker_min_instances"
    assert tf.variables["worker_min_instances"]["default"] >= 1
    assert ">= 1" in tf.variables["worker_min_instances"]["validation"][0]["condition"]
    assert template["containers"][0]["resources"][0]["cpu_idle"] is False
    assert address(template["service_account"]) == 'google_service_account.component["worker"]'


def test_worker_image_is_the_registry_path_with_the_tag_variable(tf: Terraform) -> None:
    (container,) = tf.block(COMPONENT_RESOURCES["worker"])["template"][0]["containers"]
    assert expr(container["image"]) == "local.worker_image"
    assert tf.local("worker_image") == (
        "${var.region}-docker.pkg.dev/${var.project_id}/"
        '${google_artifact_registry_repository.images["worker"].repository_id}/worker:${var.worker_image_tag}'
    )
    repos = tf.resources["google_artifact_registry_repository.images"]
    assert expr(repos["for_each"]) == "local.image_repositories"
    assert expr(repos["repository_id"]) == "each.value.id"
    assert expr(repos["docker_config"][0]["immutable_tags"]) == "each.value.immutable_tags"
    worker = tf.local("image_repositories")["worker"]
    assert expr(worker["id"]) == "var.artifact_repository"
    assert worker["immutable_tags"] is True


# --- Resonate server ----------------------------------------------------------------------


def test_server_runs_one_always_on_instance_with_long_requests(tf: Terraform) -> None:
    server = tf.block(COMPONENT_RESOURCES["server"])
    template = server["template"][0]
    scaling = template["scaling"][0]
    assert scaling["min_instance_count"] == scaling["max_instance_count"] == 1
    assert template["timeout"] == "3600s"
    (container,) = template["containers"]
    assert container["resources"][0]["cpu_idle"] is False
    assert container["args"] == ["serve"]
    assert expr(container["image"]) == "var.resonate_image"


def test_a_server_rollout_rolls_the_worker_after_it(tf: Terraform) -> None:
    """Two server revisions overlap during a deploy, each with its own stream registry: the
    worker's new instances must connect to the new server at once (README.md, Operating notes)."""
    labels = tf.block(COMPONENT_RESOURCES["worker"])["template"][0]["labels"]
    assert expr(labels["server-rollout"]) == "local.server_rollout"
    assert "sha256(jsonencode(google_cloud_run_v2_service.server.template))" in tf.local("server_rollout")


def test_two_server_pools_fit_the_smallest_tier(tf: Terraform) -> None:
    conditions = [expr(v["condition"]) for v in tf.variables["resonate_pool_size"]["validation"]]
    assert 'var.db_tier != "db-f1-micro" || 2 * var.resonate_pool_size <= 22' in conditions
    assert 2 * tf.variables["resonate_pool_size"]["default"] <= 22


def test_server_env_ports_and_probes(tf: Terraform) -> None:
    server = tf.block(COMPONENT_RESOURCES["server"])
    (container,) = server["template"][0]["containers"]
    env = component_env(tf, "server")
    port = tf.resolve(container["ports"][0]["container_port"])
    assert port == 8001
    assert str(tf.resolve(env["RESONATE_SERVER__PORT"].value)) == "8001"
    assert "PORT" not in env
    assert env["RESONATE_SERVER__BIND"].value == "0.0.0.0"
    assert env["RESONATE_STORAGE__TYPE"].value == "postgres"
    assert env["RESONATE_STORAGE__POSTGRES__URL"].secret == "google_secret_manager_secret.db_url"
    assert "RESONATE_STORAGE__POSTGRES__POOL_SIZE" in env
    assert env["RESONATE_OBSERVABILITY__METRICS_PORT"].value == "9090"
    assert expr(env["RESONATE_SERVER__URL"].value) == "local.server_url"
    assert ".run.app" in tf.local("server_url")
    startup = container["startup_probe"][0]["http_get"][0]
    liveness = container["liveness_probe"][0]["http_get"][0]
    assert (startup["path"], tf.resolve(startup["port"])) == ("/ready", 8001)
    assert (liveness["path"], tf.resolve(liveness["port"])) == ("/health", 8001)


def test_server_public_key_is_a_mounted_file(tf: Terraform) -> None:
    server = tf.block(COMPONENT_RESOURCES["server"])
    template = server["template"][0]
    (container,) = template["containers"]
    env = component_env(tf, "server")
    path = tf.resolve(env["RESONATE_AUTH__PUBLICKEY"].value)
    path = path.replace("${local.server_auth_dir}", tf.local("server_auth_dir"))
    volumes = {v["name"]: v for v in template["volumes"]}
    mounts = {m["name"]: tf.resolve(m["mount_path"]) for m in container["volume_mounts"]}
    (secret,) = volumes["auth"]["secret"]
    assert address(secret["secret"]) == "google_secret_manager_secret.jwt_public_key"
    assert path == f"{mounts['auth']}/{secret['items'][0]['path']}"
    assert mounts["cloudsql"] == "/cloudsql"
    assert (
        "google_sql_database_instance.resonate.connection_name"
        in volumes["cloudsql"]["cloud_sql_instance"][0]["instances"][0]
    )


def test_database_url_uses_the_cloudsql_socket(tf: Terraform) -> None:
    version = tf.resources["google_secret_manager_secret_version.db_url"]
    data = version["secret_data_wo"]
    assert "postgres://%s:%s@%s/%s" in data
    assert 'urlencode("/cloudsql/${google_sql_database_instance.resonate.connection_name}")' in data
    # The URL's password is the one the SQL user is given, in the same apply.
    user = tf.resources["google_sql_user.resonate"]
    assert "ephemeral.random_password.db.result" in data
    assert expr(user["password_wo"]) == "ephemeral.random_password.db.result"


# --- generated secrets: never in the state, replaced without an outage -----------------------

#: Secret versions whose value Terraform generates (the JWT public key is public: plain data).
GENERATED = ("db_url", "signing_key", "notify_webhook", "webhook")


def test_generated_secrets_stay_out_of_the_state(tf: Terraform) -> None:
    assert not tf.of_type("random_password"), "random_password keeps its result in the state: use the ephemeral one"
    for name in GENERATED:
        version = tf.resources[f"google_secret_manager_secret_version.{name}"]
        assert "secret_data" not in version, f"{name}: secret_data is stored in the state"
        assert "ephemeral.random_password." in version["secret_data_wo"], name
        assert "var.rotations." in version["secret_data_wo_version"], f"{name}: no way to rotate it"
    for name, user in tf.of_type("google_sql_user").items():
        assert "password" not in user, f"{name}: the password would be stored in the state"
        assert "password_wo_version" in user, name
    for name, body in tf.ephemeral.items():
        assert name.startswith("random_password."), name
        assert body["special"] is False, f"{name}: the values go into URLs and headers unescaped"
        assert body["length"] >= 32, name


def test_the_db_password_changes_exactly_when_its_url_secret_gets_a_new_version(tf: Terraform) -> None:
    user = tf.resources["google_sql_user.resonate"]
    # Any new version of the URL secret (a rotation, or a replaced secret) was written with this
    # apply's password: the user must get the same one in the same apply.
    assert expr(user["password_wo_version"]) == "google_secret_manager_secret_version.db_url.version"
    server = tf.block(COMPONENT_RESOURCES["server"])
    assert "${google_sql_user.resonate}" in server["depends_on"], "the server must roll after the password changed"


def test_rotations_variable_is_typed_and_validated(tf: Terraform) -> None:
    var = tf.variables["rotations"]
    for key in ("db_password", "signing_key", "notify_webhook_secret", "webhook_secret"):
        assert key in var["type"], key
    assert var.get("validation")


def test_secret_versions_are_replaced_before_the_old_one_goes(tf: Terraform) -> None:
    versions = tf.of_type("google_secret_manager_secret_version")
    assert versions
    for name, version in versions.items():
        (lifecycle,) = version.get("lifecycle", [{}])
        # Without it the old version is destroyed first, and instances of the serving revision,
        # which pin it, cannot start until the new revision is out.
        assert lifecycle.get("create_before_destroy") is True, name


def test_terraform_is_new_enough_for_write_only_attributes(tf: Terraform) -> None:
    (block,) = tf.terraform
    assert re.match(r">= ?1\.(1[1-9]|[2-9][0-9])\b", block["required_version"]), block["required_version"]
    providers = block["required_providers"][0]
    assert re.fullmatch(r"~> 3\.([7-9]|[1-9][0-9])", providers["random"]["version"]), "ephemeral random_password: 3.7+"
    cloudbuild_tf = (ROOT / "cloudbuild.yaml").read_text()
    m = re.search(r"hashicorp/terraform:(\d+)\.(\d+)\.\d+", cloudbuild_tf)
    assert m and (int(m.group(1)), int(m.group(2))) >= (1, 11), "Cloud Build's Terraform must support write-only"


# --- functions -----------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["start", "unblock"])
def test_functions_build_python312_from_the_bundle(tf: Terraform, name: str) -> None:
    module = tf.child(FUNCTION_MODULE)
    build = module.resources[FUNCTION_RESOURCE]["build_config"][0]
    assert build["runtime"] == "python312"
    assert expr(build["entry_point"]) == "var.entry_point"
    source = build["source"][0]["storage_source"][0]
    assert (expr(source["bucket"]), expr(source["object"])) == ("var.bundle.bucket", "var.bundle.object")
    assert expr(build["service_account"]) == "var.build.service_account"

    inputs = tf.block(COMPONENT_RESOURCES[name])
    assert inputs["entry_point"] == name
    assert address(inputs["bundle"]["object"]) == "google_storage_bucket_object.functions_bundle"
    assert address(inputs["bundle"]["bucket"]) == "google_storage_bucket.functions_source"
    obj = tf.resources["google_storage_bucket_object.functions_bundle"]
    assert "filesha256(var.functions_bundle)" in obj["name"], "object name must follow the bundle's content"
    assert expr(obj["source"]) == "var.functions_bundle"
    assert address(inputs["build"]["service_account"]) == 'google_service_account.component["functions_build"]'


#: GET start?workflow_id=...&wait=60 holds the request up to 60 s (the long poll).
LONGEST_START_WAIT = 60


def test_start_timeout_is_well_above_the_long_poll(tf: Terraform) -> None:
    assert tf.block(COMPONENT_RESOURCES["start"])["runtime"]["timeout_seconds"] >= LONGEST_START_WAIT + 30
    service = tf.child(FUNCTION_MODULE).resources[FUNCTION_RESOURCE]["service_config"][0]
    assert expr(service["timeout_seconds"]) == "var.runtime.timeout_seconds"


def test_unblock_is_public_and_start_is_chosen_by_variable(tf: Terraform) -> None:
    module = tf.child(FUNCTION_MODULE)
    (binding,) = module.of_type("google_cloud_run_v2_service_iam_binding").values()
    assert binding["role"] == "roles/run.invoker"
    assert expr(binding["members"]) == "var.invokers"
    assert expr(binding["name"]) == f"{FUNCTION_RESOURCE}.service_config[0].service"
    unblock = tf.block(COMPONENT_RESOURCES["unblock"])
    # public, but with approver sign-in only IAP (through the load balancer) may invoke it
    assert expr(unblock["invokers"]) == 'local.sign_in ? [local.iap_agent] : ["allUsers"]'
    assert expr(unblock["ingress"]) == 'local.sign_in ? "ALLOW_INTERNAL_AND_GCLB" : "ALLOW_ALL"'
    assert expr(tf.local("sign_in")) == 'var.approver_sign_in == "iap"'
    assert tf.variables["approver_sign_in"]["default"] == "none"
    start = tf.block(COMPONENT_RESOURCES["start"])["invokers"]
    assert expr(start) == 'local.start_webhook ? ["allUsers"] : var.start_invokers'
    assert "allUsers" not in str(tf.variables["start_invokers"].get("default"))
    bindings = tf.of_type("google_cloud_run_v2_service_iam_binding")
    worker_bindings = [k for k, b in bindings.items() if "worker" in str(b.get("name"))]
    assert not worker_bindings, "nothing may invoke the worker"
    assert set(bindings) == {"google_cloud_run_v2_service_iam_binding.server_invoker"}


# --- secrets and IAM --------------------------------------------------------------------------


def test_every_secret_exists_and_is_readable_by_exactly_its_readers(tf: Terraform) -> None:
    readers: dict[str, set[str]] = {}
    for component in COMPONENT_RESOURCES:
        sa = component_service_account(tf, component)
        for secret in component_secrets(tf, component):
            assert tf.exists(secret), f"{component} reads {secret}, which is not defined"
            readers.setdefault(secret, set()).add(sa)

    granted: dict[str, set[str]] = {}
    for name, binding in tf.of_type("google_secret_manager_secret_iam_binding").items():
        assert binding["role"] == "roles/secretmanager.secretAccessor", name
        secret = address(binding["secret_id"])
        assert secret not in granted, f"two bindings for {secret}"
        granted[secret] = members_service_accounts(binding["members"])
    assert granted == readers

    assert not tf.of_type("google_secret_manager_secret_iam_member")
    assert not tf.of_type("google_secret_manager_secret_iam_policy")
    for name, member in tf.of_type("google_project_iam_member").items():
        assert "secretmanager" not in member["role"], f"{name}: project-wide secret access"


def test_one_service_account_per_component(tf: Terraform) -> None:
    accounts = [component_service_account(tf, c) for c in COMPONENT_RESOURCES]
    assert len(set(accounts)) == len(accounts)
    for sa in accounts:
        assert tf.exists(sa)


def test_no_primitive_roles_anywhere(tf: Terraform) -> None:
    for filename, text in tf.text.items():
        assert not re.search(r"roles/(owner|editor|viewer)\b", text), filename
    for name, body in tf.resources.items():
        role = body.get("role")
        if role is not None:
            assert role.startswith("roles/") and role.split("/")[1] not in ("owner", "editor", "viewer"), name


def test_no_secret_in_variable_defaults_or_outputs(tf: Terraform) -> None:
    for name, var in tf.variables.items():
        if re.search(r"password|secret|token|signing", name) and name != "resonate_jwt_public_key":
            assert "default" not in var, f"variable {name} has a default"
    for name, output in tf.outputs.items():
        value = str(output["value"])
        assert not re.search(r"random_password|secret_version|secret_data|\.result\b", value), name
        assert output.get("sensitive") is not True, f"output {name} should not carry a secret at all"


# --- variables, versions, APIs ------------------------------------------------------------------


def test_every_variable_has_description_and_type(tf: Terraform) -> None:
    assert tf.variables
    for name, var in tf.variables.items():
        assert var.get("description"), f"{name}: no description"
        assert var.get("type"), f"{name}: no type"


def _regexes(tf: Terraform, variable: str) -> list[tuple[bool, re.Pattern[str]]]:
    """(negated, pattern) of every `can(regex("...", var.X))` validation of a variable."""
    out = []
    for v in tf.variables[variable].get("validation", []):
        cond = expr(v["condition"])
        m = re.fullmatch(r'(!?)can\(regex\("((?:[^"\\]|\\.)*)", var\.' + variable + r"\)\)", cond)
        if m:
            out.append((m.group(1) == "!", re.compile(hcl_string(m.group(2)))))
    return out


def _accepted(tf: Terraform, variable: str, value: str) -> bool:
    checks = _regexes(tf, variable)
    assert checks, f"{variable} has no regex validation"
    return all(bool(p.search(value)) != negated for negated, p in checks)


@pytest.mark.parametrize(
    ("variable", "value", "ok"),
    [
        ("region", "europe-west1", True),
        ("region", "us-central1", True),
        ("region", "northamerica-northeast2", True),
        ("region", "europe-west1-b", False),
        ("region", "Europe", False),
        ("project_id", "my-project", True),
        ("project_id", "My_Project", False),
        ("resonate_image", "docker.io/resonatehqio/resonate:v0.10.0", True),
        ("resonate_image", "ghcr.io/resonatehq/resonate:v0.10.0", True),
        ("resonate_image", "resonatehqio/resonate:v0.11.2", True),
        ("resonate_image", "resonatehqio/resonate:v1.0.0", True),
        ("resonate_image", "resonatehqio/resonate@sha256:" + "a" * 64, True),
        ("resonate_image", "docker.io/resonatehqio/resonate:v0.10.0@sha256:" + "0123456789abcdef" * 4, True),
        ("resonate_image", "europe-docker.pkg.dev/p/mirror/resonate:v0.10.0", True),
        ("resonate_image", "resonatehqio/resonate:latest", False),
        ("resonate_image", "resonatehqio/resonate", False),
        ("resonate_image", "resonatehqio/resonate@sha256:abc", False),
        ("resonate_image", "resonatehqio/resonate:v0.10.0 ", False),
        # v0.9.9 was never released; every 0.x before 0.10 splits ids on "." (PR #1127 is in v0.10.0).
        ("resonate_image", "docker.io/resonatehqio/resonate:v0.9.9", False),
        ("resonate_image", "resonatehqio/resonate:v0.9.8", False),
        ("resonate_image", "resonatehqio/resonate:v0.8.3", False),
        ("resonate_image", "resonatehqio/resonate:v0.9.8@sha256:" + "a" * 64, False),
        ("db_tier", "db-f1-micro", True),
        ("db_tier", "db-g1-small", True),
        ("db_tier", "db-custom-1-3840", True),
        # Enterprise Plus tiers: the instance's edition is fixed to ENTERPRISE (database.tf).
        ("db_tier", "db-perf-optimized-N-2", False),
        ("db_tier", "db-n1-standard-1", False),
        ("worker_image_tag", "0123456789abcdef", True),
        ("worker_image_tag", "has space", False),
    ],
)
def test_validations(tf: Terraform, variable: str, value: str, ok: bool) -> None:
    assert _accepted(tf, variable, value) is ok


def test_the_default_server_image_is_the_release_with_the_sdk_id_format(tf: Terraform) -> None:
    default = tf.variables["resonate_image"]["default"]
    assert default == "docker.io/resonatehqio/resonate:v0.10.0"
    assert _accepted(tf, "resonate_image", default)
    example = re.search(
        r'^resonate_image\s*=\s*"([^"]+)"', (ROOT / "infra" / "terraform.tfvars.example").read_text(), re.M
    )
    assert example and _accepted(tf, "resonate_image", example.group(1))


def test_db_tier_fits_the_fixed_enterprise_edition(tf: Terraform) -> None:
    (settings,) = tf.resources["google_sql_database_instance.resonate"]["settings"]
    assert settings["edition"] == "ENTERPRISE"
    assert _accepted(tf, "db_tier", tf.variables["db_tier"]["default"])


def test_start_in_iam_mode_needs_an_invoker(tf: Terraform) -> None:
    conditions = [expr(v["condition"]) for v in tf.variables["start_invokers"]["validation"]]
    assert 'var.start_auth != "iam" || length(var.start_invokers) > 0' in conditions, conditions


def test_sql_users_do_not_block_destroy(tf: Terraform) -> None:
    users = tf.of_type("google_sql_user")
    assert users
    for name, user in users.items():
        # The user owns the server's tables: Postgres refuses to drop it, so destroy would stop
        # there; the instance's own deletion removes it.
        assert user.get("deletion_policy") == "ABANDON", name


def test_moving_image_tags_are_refused(tf: Terraform) -> None:
    conditions = " ".join(v["condition"] for v in tf.variables["worker_image_tag"]["validation"])
    assert '!contains(["latest", "dev", "main"], var.worker_image_tag)' in conditions
    assert "default" not in tf.variables["worker_image_tag"]


def test_versions_and_backend(tf: Terraform) -> None:
    (block,) = tf.terraform
    assert block["required_version"].startswith(">=")
    providers = (
        block["required_providers"][0] if isinstance(block["required_providers"], list) else block["required_providers"]
    )
    google = providers["google"]
    assert google["source"] == "hashicorp/google"
    assert re.fullmatch(r"~> \d+\.\d+", google["version"])
    (backend,) = block["backend"]
    assert "gcs" in backend


def test_apis_are_enabled_by_the_config(tf: Terraform) -> None:
    apis = tf.local("apis")
    for api in (
        "run.googleapis.com",
        "cloudfunctions.googleapis.com",
        "cloudbuild.googleapis.com",
        "artifactregistry.googleapis.com",
        "secretmanager.googleapis.com",
        "sqladmin.googleapis.com",
        "iam.googleapis.com",
    ):
        assert api in apis
    service = tf.resources["google_project_service.apis"]
    assert expr(service["for_each"]) == (
        'var.approver_sign_in == "iap" ? setunion(local.apis, local.sign_in_apis) : local.apis'
    )
    assert expr(tf.local("sign_in_apis")) == 'toset(["compute.googleapis.com", "iap.googleapis.com"])'

    assert service["disable_on_destroy"] is False


def test_layout_has_a_file_per_concern() -> None:
    infra = ROOT / "infra"
    for name in (
        "versions.tf",
        "variables.tf",
        "outputs.tf",
        "apis.tf",
        "server.tf",
        "database.tf",
        "worker.tf",
        "functions.tf",
        "secrets.tf",
        "iam.tf",
        "registry.tf",
        "terraform.tfvars.example",
        "README.md",
        # A repeated shape is a module: each with its inputs, resources, outputs and versions.
        "modules/function/variables.tf",
        "modules/function/main.tf",
        "modules/function/outputs.tf",
        "modules/function/versions.tf",
    ):
        assert (infra / name).is_file(), name


def test_tfvars_example_only_names_declared_variables(tf: Terraform) -> None:
    text = (ROOT / "infra" / "terraform.tfvars.example").read_text()
    names = re.findall(r"^#?\s*([a-z_]+)\s*=", text, re.M)
    assert names
    for name in names:
        assert name in tf.variables, name
    required = {n for n, v in tf.variables.items() if "default" not in v}
    cloud_build_sets = {"worker_image_tag"}
    for name in required - cloud_build_sets:
        assert re.search(rf"^{name}\s*=", text, re.M), f"{name} is required but not in the example"


def test_the_provider_lock_file_pins_what_versions_tf_allows() -> None:
    """infra/.terraform.lock.hcl is committed (its zh: checksums from ../shared/terraform-provider-hashes.md:
    the release archives' SHA-256, as the registry lists them) and agrees with every versions.tf:
    each provider they require is locked, under the very constraint they write, at a version
    that constraint admits; init -lockfile=readonly then installs exactly these builds."""
    ignored = subprocess.run(
        ["git", "check-ignore", "-q", "infra/.terraform.lock.hcl"], cwd=ROOT, capture_output=True, check=False
    )
    assert ignored.returncode == 1, "infra/.terraform.lock.hcl must not be git-ignored"
    lock = (ROOT / "infra" / ".terraform.lock.hcl").read_text()
    locked = dict(
        re.findall(r'^provider "registry\.terraform\.io/hashicorp/([a-z0-9-]+)" \{\n(.*?)^\}', lock, re.S | re.M)
    )
    required: dict[str, set[str]] = {}
    for versions in (ROOT / "infra").rglob("versions.tf"):
        if ".terraform" in versions.parts:
            continue
        for block in hcl2.loads(versions.read_text())["terraform"]:  # type: ignore[no-untyped-call]
            for providers in block.get("required_providers", []):
                for name, spec in providers.items():
                    if name.startswith("__"):  # the parser's comments
                        continue
                    assert unquote(spec["source"]) == f"hashicorp/{name}", (versions, name)
                    required.setdefault(name, set()).add(unquote(spec["version"]))
    assert set(locked) == set(required) == {"google", "random"}
    expected = {"google": "6.50.0", "random": "3.7.2"}
    for name, body in locked.items():
        version = re.search(r'^\s*version\s*=\s*"([^"]+)"', body, re.M).group(1)  # type: ignore[union-attr]
        constraints = re.search(r'^\s*constraints\s*=\s*"([^"]+)"', body, re.M).group(1)  # type: ignore[union-attr]
        assert version == expected[name]
        assert {constraints} == required[name], f"{name}: the lock says {constraints}, versions.tf {required[name]}"
        assert admits(constraints, version), f"{name} {version} is outside {constraints}"
        hashes = re.findall(r'"(zh|h1):([^"]+)"', body)
        assert len([h for kind, h in hashes if kind == "zh" and re.fullmatch(r"[0-9a-f]{64}", h)]) == 12, name


def admits(constraint: str, version: str) -> bool:
    """Whether ``version`` meets a pessimistic constraint (``~> 6.37``: >= 6.37, < 7)."""
    op, _, bound = constraint.partition(" ")
    assert op == "~>", constraint
    low = [int(x) for x in bound.split(".")]
    have = [int(x) for x in version.split(".")]
    return have[: len(low) - 1] == low[:-1] and have[: len(low)] >= low
