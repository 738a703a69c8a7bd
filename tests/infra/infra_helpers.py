"""Read infra/*.tf (python-hcl2), cloudbuild.yaml and worker/Dockerfile into plain Python.

python-hcl2 8 keeps string literals quoted (``'"worker"'``), wraps expressions
as ``"${...}"`` and marks blocks with ``__is_block__``; 7 did not quote. The
helpers below normalise both to: literals without quotes, expressions kept as
``${...}``, blocks as lists of dicts, no ``__*__`` keys.
"""

from __future__ import annotations

import functools
import json
import re
import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import hcl2
import yaml

ROOT = Path(__file__).resolve().parents[2]
INFRA = ROOT / "infra"

#: Which Terraform resource, or module instance, runs each component.
COMPONENT_RESOURCES = {
    "server": "google_cloud_run_v2_service.server",
    "worker": "google_cloud_run_v2_service.worker",
    "start": 'module.function["start"]',
    "unblock": 'module.function["unblock"]',
}

#: The module every function is an instance of, and the resource in it that runs the function.
FUNCTION_MODULE = "function"
FUNCTION_RESOURCE = "google_cloudfunctions2_function.this"


def unquote(value: Any) -> Any:
    if isinstance(value, str):
        if len(value) >= 2 and value[0] == '"' and value[-1] == '"':
            return value[1:-1]
        return value
    if isinstance(value, list):
        return [unquote(v) for v in value]
    if isinstance(value, dict):
        return {unquote(k): unquote(v) for k, v in value.items() if not (isinstance(k, str) and k.startswith("__"))}
    return value


def expr(value: Any) -> str:
    """The expression inside ``${...}`` (or the literal itself)."""
    assert isinstance(value, str), value
    m = re.fullmatch(r"\$\{(.*)\}", value, re.S)
    return m.group(1) if m else value


def hcl_string(literal: str) -> str:
    """Decode an HCL string literal's escapes (the subset JSON shares: \\\\ \\" \\n)."""
    return json.loads(f'"{literal}"')


_MODULE_INSTANCE = re.compile(r'module\.([a-z0-9_]+)(?:\["([a-z0-9_-]+)"\])?')

_ADDRESS = re.compile(r'(data\.)?(google_[a-z0-9_]+|random_[a-z_]+)\.([a-z0-9_]+)(\["[a-z0-9_-]+"\])?')


def address(value: str) -> str:
    """``${data.google_x.y[0].secret_id}`` -> ``data.google_x.y``; a for_each key is kept:
    ``${google_x.y["k"].email}`` -> ``google_x.y["k"]``."""
    m = _ADDRESS.search(value)
    assert m, f"no resource address in {value!r}"
    return f"{m.group(1) or ''}{m.group(2)}.{m.group(3)}{m.group(4) or ''}"


@dataclass
class Terraform:
    resources: dict[str, dict[str, Any]]
    data: dict[str, dict[str, Any]]
    ephemeral: dict[str, dict[str, Any]]
    variables: dict[str, dict[str, Any]]
    outputs: dict[str, dict[str, Any]]
    locals: dict[str, Any]
    terraform: list[dict[str, Any]]
    text: dict[str, str]
    #: module calls by name, and the parsed module each one's ``source`` names
    modules: dict[str, dict[str, Any]]
    children: dict[str, Terraform]

    def block(self, addr: str) -> dict[str, Any]:
        """A resource, a data source, or a module instance's inputs (``module.NAME["KEY"]``)."""
        if addr.startswith("module."):
            name, key = _MODULE_INSTANCE.fullmatch(addr).groups()
            return self.module_inputs(name, key)
        if addr.startswith("data."):
            return self.data[addr[5:]]
        return self.resources[addr]

    def exists(self, addr: str) -> bool:
        base, _, key = addr.partition('["')
        if base.startswith("data."):
            found = base[5:] in self.data
            body = self.data.get(base[5:], {})
        else:
            found = base in self.resources
            body = self.resources.get(base, {})
        if not found or not key:
            return found
        m = re.fullmatch(r"\$\{local\.([a-z0-9_]+)\}", str(body.get("for_each", "")))
        return bool(m) and key.removesuffix('"]') in self.locals[m.group(1)]

    def child(self, name: str) -> Terraform:
        """The module a call uses."""
        return self.children[self.modules[name]["source"]]

    def module_inputs(self, name: str, key: str | None = None) -> dict[str, Any]:
        """A module call's arguments for one instance: ``each.key`` and ``each.value.X`` replaced
        by that instance's key and its entry of the ``for_each`` local (literals where written so)."""
        call = self.modules[name]
        if key is None:
            assert "for_each" not in call, f"module.{name} has instances: name one"
            return {k: v for k, v in call.items() if k not in ("source", "for_each", "depends_on")}
        m = re.fullmatch(r"\$\{local\.([a-z0-9_]+)\}", call["for_each"])
        assert m, f"module.{name}: for_each must be a local map"
        entry = self.locals[m.group(1)][key]

        def each(value: Any) -> Any:
            if isinstance(value, str):
                if value == "${each.key}":
                    return key
                m = re.fullmatch(r"\$\{each\.value\.([a-z0-9_]+)\}", value)
                if m:
                    return entry[m.group(1)]
                return value
            if isinstance(value, dict):
                return {k: each(v) for k, v in value.items()}
            if isinstance(value, list):
                return [each(v) for v in value]
            return value

        return {k: each(v) for k, v in call.items() if k not in ("source", "for_each", "depends_on")}

    def of_type(self, type_: str) -> dict[str, dict[str, Any]]:
        """The resources of a type; one ``NAME["KEY"]`` each for a ``for_each`` over a local map."""
        out: dict[str, dict[str, Any]] = {}
        for name, body in self.resources.items():
            if name.split(".")[0] != type_:
                continue
            m = re.fullmatch(r"\$\{local\.([a-z0-9_]+)\}", str(body.get("for_each", "")))
            if m and isinstance(self.locals.get(m.group(1)), dict):
                for key, value in self.locals[m.group(1)].items():
                    out[f'{name}["{key}"]'] = _each(body, key, value)
            else:
                out[name] = body
        return out

    def local(self, name: str) -> Any:
        return self.locals[name]

    def resolve(self, value: Any) -> Any:
        """Follow ``local.x`` / ``tostring(local.x)`` to a literal where there is one."""
        if isinstance(value, str):
            m = re.fullmatch(r"\$\{(?:tostring\()?local\.([a-z0-9_]+)\)?\}", value)
            if m:
                return self.resolve(self.locals[m.group(1)])
        return value


def _each(value: Any, key: str, each_value: Any) -> Any:
    """``value`` with ``each.key`` and (a string) ``each.value`` written out for one instance."""
    if isinstance(value, str):
        value = value.replace("[each.key]", f'["{key}"]').replace("${each.key}", key)
        if isinstance(each_value, str):
            value = value.replace("[each.value]", f'["{each_value}"]').replace("${each.value}", each_value)
        return value
    if isinstance(value, dict):
        return {k: _each(v, key, each_value) for k, v in value.items() if k != "for_each"}
    if isinstance(value, list):
        return [_each(v, key, each_value) for v in value]
    return value


@functools.cache
def terraform(directory: Path = INFRA) -> Terraform:
    """One Terraform module (by default the root, infra/) and, below it, the local modules it calls."""
    resources: dict[str, dict[str, Any]] = {}
    data: dict[str, dict[str, Any]] = {}
    ephemeral: dict[str, dict[str, Any]] = {}
    variables: dict[str, dict[str, Any]] = {}
    outputs: dict[str, dict[str, Any]] = {}
    locals_: dict[str, Any] = {}
    tf_blocks: list[dict[str, Any]] = []
    text: dict[str, str] = {}
    modules: dict[str, dict[str, Any]] = {}
    for path in sorted(directory.glob("*.tf")):
        text[path.name] = path.read_text()
        doc = unquote(hcl2.loads(text[path.name]))
        for kind, into in (("resource", resources), ("data", data), ("ephemeral", ephemeral)):
            for entry in doc.get(kind, []):
                for type_, named in entry.items():
                    for name, body in named.items():
                        into[f"{type_}.{name}"] = body
        for entry in doc.get("variable", []):
            variables.update(entry)
        for entry in doc.get("output", []):
            outputs.update(entry)
        for entry in doc.get("locals", []):
            locals_.update(entry)
        for entry in doc.get("module", []):
            modules.update(entry)
        tf_blocks.extend(doc.get("terraform", []))
    children = {}
    for call in modules.values():
        source = call["source"]
        assert source.startswith("./modules/"), f"only local modules under modules/: {source}"
        children[source] = terraform((directory / source).resolve())
    return Terraform(resources, data, ephemeral, variables, outputs, locals_, tf_blocks, text, modules, children)


@dataclass(frozen=True)
class Env:
    name: str
    value: str | None = None  # plain value (expression or literal)
    secret: str | None = None  # address of the secret it comes from
    conditional: bool = False  # inside a dynamic block


def component_env(tf: Terraform, component: str) -> dict[str, Env]:
    addr = COMPONENT_RESOURCES[component]
    out: dict[str, Env] = {}
    if addr.startswith("google_cloud_run_v2_service."):
        (container,) = tf.block(addr)["template"][0]["containers"]
        for env in container.get("env", []):
            ref = None
            if "value_source" in env:
                ref = address(env["value_source"][0]["secret_key_ref"][0]["secret"])
            assert env["name"] not in out, f"{component}: {env['name']} set twice"
            out[env["name"]] = Env(env["name"], env.get("value"), ref)
        return out
    # A function: the module instance's env and secret_env (modules/function wires them,
    # test_function_module_passes_its_env_through holds it to that).
    inputs = tf.block(addr)
    for name, value in inputs.get("env", {}).items():
        out[name] = Env(name, value)
    for name, spec in inputs.get("secret_env", {}).items():
        assert name not in out, f"{component}: {name} set twice"
        out[name] = Env(name, None, address(spec["secret"]), conditional="enabled" in spec)
    return out


def component_secrets(tf: Terraform, component: str) -> set[str]:
    """Addresses of every secret a component reads (env and mounted files)."""
    refs = {e.secret for e in component_env(tf, component).values() if e.secret}
    body = tf.block(COMPONENT_RESOURCES[component])
    if "template" in body:
        for volume in body["template"][0].get("volumes", []):
            for secret in volume.get("secret", []):
                refs.add(address(secret["secret"]))
    return refs


def component_service_account(tf: Terraform, component: str) -> str:
    body = tf.block(COMPONENT_RESOURCES[component])
    sa = body["template"][0]["service_account"] if "template" in body else body["runtime"]["service_account_email"]
    return address(sa)


def members_service_accounts(members: list[str]) -> set[str]:
    out = set()
    for m in members:
        found = re.findall(r'google_service_account\.([a-z0-9_]+(?:\["[a-z0-9_-]+"\])?)\.email', m)
        assert found, f"member {m!r} is not one of this config's service accounts"
        out.update(f"google_service_account.{f}" for f in found)
    return out


# --- cloudbuild.yaml -------------------------------------------------------------------


@functools.cache
def cloudbuild() -> dict[str, Any]:
    return yaml.safe_load((ROOT / "cloudbuild.yaml").read_text())


def step_commands(step: dict[str, Any]) -> list[list[str]]:
    """A step's commands as argv lists (a bash/sh -c script is split per line)."""
    args = [str(a) for a in step.get("args", [])]
    entry = step.get("entrypoint")
    if entry in ("bash", "sh") and args[:1] in (["-c"], ["-ec"]):
        commands = []
        for line in args[1].splitlines():
            line = line.strip()
            if line and not line.startswith("#"):
                try:
                    commands.append(shlex.split(line))
                except ValueError:
                    commands.append(line.split())
        return commands
    name = step["name"]
    for sub, value in cloudbuild().get("substitutions", {}).items():
        name = name.replace("${" + sub + "}", str(value))
    program = entry or name.rsplit("/", 1)[-1].split(":")[0]
    return [[program, *args]]


# --- worker/Dockerfile -----------------------------------------------------------------


@dataclass
class Instruction:
    op: str
    arg: str


def dockerfile(path: Path = ROOT / "worker" / "Dockerfile") -> list[Instruction]:
    """Instructions with continuation lines joined and comments dropped."""
    out: list[Instruction] = []
    pending = ""
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        full = (pending + line).strip()
        pending = ""
        op, _, arg = full.partition(" ")
        out.append(Instruction(op.upper(), arg.strip()))
    return out


def stages(instructions: list[Instruction]) -> list[list[Instruction]]:
    result: list[list[Instruction]] = []
    for ins in instructions:
        if ins.op == "FROM":
            result.append([])
        if result:
            result[-1].append(ins)
    return result
