"""Strict configuration (gateway/config.py, adapters/options.py): every kind of misspelling
is refused with one line naming the place, environment values take the declared type,
the declared options are the ones the adapters read, and docs/configuration.md is the
schema's own rendering."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from adapters.options import OPTIONS
from adapters.registry import BACKENDS, create_adapter
from gateway import config, config_doc, config_fields
from tests.scale.procs import FEDGATE, free_port

REPO = Path(__file__).resolve().parents[2]

S3 = '[mounts.data]\ntype = "s3"\nbucket = "b"\n'
IRODS = '[mounts.data]\ntype = "irods"\nhost = "h"\nzone = "z"\nroot = "/z/home"\n'
GIRDER = '[mounts.data]\ntype = "girder"\napi_url = "http://g/api/v1"\nroot = "/collection/c"\n'
GFAL = '[mounts.data]\ntype = "gfal"\nbase_url = "root://se:1094//data"\n'
POSIX = '[mounts.data]\ntype = "posix"\nroot = "/srv"\n'


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # unknown section, unknown [server] key, wrong [server] type
        ("[sever]\nport = 1\n",
         ("[sever]: unknown section (expected [server]", "; did you mean [server]?")),
        ("[server]\nprot = 1\n", "[server] prot: unknown key; did you mean 'port'?"),
        ('[server]\nport = "80"\n', "[server] port: expected an integer, got '80' (string)"),
        ("[server]\nsocket_bodies = 1\n", "[server] socket_bodies: expected a boolean"),
        ('[server]\ntrusted_proxies = ["10.0.0.0/8", "proxy"]\n',
         "[server] trusted_proxies: expected IP addresses or networks (CIDR), got 'proxy'"),
        ("[server]\nworkers = 0\n", "[server] workers: expected at least 1"),
        # unknown options, every backend (posix too), and the mount-level keys
        (POSIX + "roott = '/x'\n", "[mounts.data] roott: unknown posix option; "
         "did you mean 'root'?"),
        (S3 + "bucekt = 'b'\n", "[mounts.data] bucekt: unknown s3 option; did you mean 'bucket'?"),
        (S3 + "allow_redirect = false\n", "[mounts.data] allow_redirect: unknown s3 option; "
         "did you mean 'redirect'?"),
        (GIRDER + "api_kye = 'k'\n", "[mounts.data] api_kye: unknown girder option; "
         "did you mean 'api_key'?"),
        (IRODS + "pasword = 'p'\n", "[mounts.data] pasword: unknown irods option; "
         "did you mean 'password'?"),
        (GFAL + "tokn = 't'\n", "[mounts.data] tokn: unknown gfal option; "
         "did you mean 'token'?"),
        (POSIX + "write_user = ['a']\n", "[mounts.data] write_user: unknown posix option; "
         "did you mean 'write_users'?"),
        # wrong types, unknown types, missing required options
        (IRODS + "port = '1247'\n", "[mounts.data] port: expected an integer, got '1247'"),
        (POSIX + "create = 'yes'\n", "[mounts.data] create: expected a boolean"),
        (POSIX + "read_users = 'alice'\n", "[mounts.data] read_users: expected a list of strings"),
        (IRODS + "auth_scheme = 'kerberos'\n",
         "[mounts.data] auth_scheme: expected one of 'native', 'pam', got 'kerberos'"),
        (POSIX + "credential_source = 'users'\n", "[mounts.data] credential_source: expected "
         "one of 'user', 'service', 'user-or-service', 'none'"),
        ('[mounts.data]\ntype = "s3x"\n', "[mounts.data] type: unknown mount type 's3x' "
         "(expected one of gfal, girder, irods, posix, s3); did you mean 's3'?"),
        ('[mounts.data]\nroot = "/x"\n', "[mounts.data] type: required"),
        ('[mounts.data]\ntype = "s3"\n', "[mounts.data] bucket: required for mount type s3"),
        ('[mounts]\ndata = 1\n', "[mounts] data: expected a table [mounts.data]"),
    ],
)  # fmt: skip
def test_each_misspelling_is_one_line_naming_the_place(
    tmp_path: Path, text: str, expected: str | tuple[str, ...]
) -> None:
    cfg = tmp_path / "fedgate.toml"
    cfg.write_text(text)
    with pytest.raises(config.ConfigError) as err:
        config.load(str(cfg), env={})
    message = str(err.value)
    assert message.startswith(f"{cfg}: "), message
    for part in (expected,) if isinstance(expected, str) else expected:
        assert part in message, message
    assert "\n" not in message


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({"FEDGATE_PORT": "80a"}, "environment FEDGATE_PORT: expected an integer, got '80a'"),
        ({"FEDGATE_SOCKET_BODIES": "maybe"}, "environment FEDGATE_SOCKET_BODIES: expected a "
         "boolean"),
        ({"FEDGATE_MOUNT__X__TYPE": "posix", "FEDGATE_MOUNT__X__ROOTT": "/x"},
         "environment FEDGATE_MOUNT__X__ROOTT: unknown posix option; did you mean 'root'?"),
        ({"FEDGATE_MOUNT__X__TYPE": "irods", "FEDGATE_MOUNT__X__HOST": "h",
          "FEDGATE_MOUNT__X__ZONE": "z", "FEDGATE_MOUNT__X__ROOT": "/z",
          "FEDGATE_MOUNT__X__PORT": "12x"},
         "environment FEDGATE_MOUNT__X__PORT: expected an integer, got '12x'"),
        ({"FEDGATE_MOUNT__X": "posix"}, "environment FEDGATE_MOUNT__X: expected "
         "FEDGATE_MOUNT__<NAME>__<OPTION>=value"),
    ],
)  # fmt: skip
def test_environment_errors_name_the_variable(env: dict[str, str], expected: str) -> None:
    with pytest.raises(config.ConfigError) as err:
        config.load(None, env=env)
    assert expected in str(err.value)


def test_environment_values_take_the_declared_type() -> None:
    s = config.load(
        None,
        env={
            "FEDGATE_MOUNT__X__TYPE": "irods",
            "FEDGATE_MOUNT__X__HOST": "h",
            "FEDGATE_MOUNT__X__ZONE": "z",
            "FEDGATE_MOUNT__X__ROOT": "/z/home",
            "FEDGATE_MOUNT__X__USER": "1000",  # a name of digits: a string
            "FEDGATE_MOUNT__X__PASSWORD": "12345",  # a password of digits: a string
            "FEDGATE_MOUNT__X__PORT": "1300",
            "FEDGATE_MOUNT__X__TIMEOUT": "7",
            "FEDGATE_MOUNT__X__REDIRECT": "off",
            "FEDGATE_MOUNT__X__WRITE_USERS": "alice, bob",
            "FEDGATE_MOUNT__Y__TYPE": "posix",
            "FEDGATE_MOUNT__Y__ROOT": "/srv",
            "FEDGATE_MOUNT__Y__CREATE": "true",
            "FEDGATE_WORKERS": "3",
            "FEDGATE_CORS_ORIGINS": "https://a, https://b",
            "FEDGATE_LOG_LEVEL": "WARNING",
            "FEDGATE_READYZ_TIMEOUT": "1.5",
        },
    )
    x, y = s.mount("x"), s.mount("y")
    assert x is not None and y is not None
    assert x.options["password"] == "12345" and x.options["user"] == "1000"
    assert x.options["port"] == 1300 and x.options["timeout"] == 7.0
    assert x.redirect is False and x.write_users == ("alice", "bob")
    assert y.options == {"root": "/srv", "create": True}
    assert s.workers == 3 and s.cors_origins == ("https://a", "https://b")
    assert s.log_level == "warning" and s.readyz_timeout == 1.5


def test_a_secret_value_is_never_shown_in_an_error(tmp_path: Path) -> None:
    cfg = tmp_path / "fedgate.toml"
    cfg.write_text(IRODS + "password = 987654321\n")
    with pytest.raises(config.ConfigError) as err:
        config.load(str(cfg), env={})
    assert "password: expected a string (or unset), got an integer" in str(err.value)
    assert "987654321" not in str(err.value)
    with pytest.raises(config.ConfigError) as err:
        config.load(None, env={"FEDGATE_DATABASE_URL": "", "FEDGATE_MOUNT__X__TYPE": "s3",
                               "FEDGATE_MOUNT__X__BUCKET": "b",
                               "FEDGATE_MOUNT__X__PATH_STYLE": "s3cr3t-ish"})  # fmt: skip
    assert "got 's3cr3t-ish'" in str(err.value)  # not a secret: shown, to help


def test_unknown_fedgate_variables_are_named_with_a_close_match() -> None:
    found = config.unknown_environment(
        {"FEDGATE_PROT": "80", "FEDGATE_PORT": "80", "FEDGATE_URL": "x", "FEDGATE_ZZZ": "1",
         "FEDGATE_MOUNT__A__TYPE": "posix", "HOME": "/root"}
    )  # fmt: skip
    assert found == [
        "FEDGATE_PROT is not a fedgate variable and is ignored; did you mean FEDGATE_PORT?",
        "FEDGATE_ZZZ is not a fedgate variable and is ignored",
    ]


def test_every_backend_declares_its_options() -> None:
    assert set(OPTIONS) == set(BACKENDS)


def _example(key: config_fields.Key, type_name: str) -> Any:
    """A value of the key's type each adapter accepts."""
    examples = {
        ("posix", "root"): "/tmp",
        ("s3", "bucket"): "b",
        ("girder", "api_url"): "http://127.0.0.1:9/api/v1",
        ("girder", "root"): "/collection/c",
        ("irods", "root"): "/z/home",
        ("gfal", "base_url"): "root://127.0.0.1:9//data",
    }
    if (type_name, key.name) in examples:
        return examples[(type_name, key.name)]
    if not key.required and key.default is not None:
        return list(key.default) if isinstance(key.default, tuple) else key.default
    described = config_fields.describe(key.type)
    return True if "boolean" in described else 1 if "integer" in described else "x"


@pytest.mark.parametrize("type_name", sorted(OPTIONS))
def test_the_adapter_accepts_every_declared_option(tmp_path: Path, type_name: str) -> None:
    """The declaration lists what the adapter's create() really reads: an adapter that
    refused a declared option (or a type) would make a valid config fail later."""
    if type_name == "gfal":
        pytest.importorskip("gfal2", reason="gfal2 is installed by scripts/gfal2-venv.sh")
    options = {k.name: _example(k, type_name) for k in config_fields.keys_of(OPTIONS[type_name])}
    text = "".join(f"{k} = {config_fields_toml(v)}\n" for k, v in options.items())
    cfg = tmp_path / "fedgate.toml"
    cfg.write_text(f'[mounts.m]\ntype = "{type_name}"\n{text}')
    mount = config.load(str(cfg), env={}).mounts[0]
    assert set(mount.options) == set(options)
    adapter = create_adapter(type_name, mount.options)
    adapter.close()


def config_fields_toml(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return json.dumps(value)


def test_the_configuration_reference_is_the_schema() -> None:
    assert config_doc.undocumented_keys() == []
    doc = (REPO / "docs" / "configuration.md").read_text()
    assert doc == config_doc.render(), "docs/configuration.md is stale: scripts/gen-config-doc.py"
    for name in config.server_keys():
        assert f"| `{name}` |" in doc and f"`FEDGATE_{name.upper()}`" in doc
    for cls in OPTIONS.values():
        for key in config_fields.keys_of(cls):
            assert f"| `{key.name}` |" in doc


# --- a real `fedgate serve` ----------------------------------------------------------


def _serve(tmp_path: Path, text: str, *args: str, env: dict[str, str] | None = None) -> Any:
    cfg = tmp_path / "fedgate.toml"
    cfg.write_text(f'[server]\nstate_dir = "{tmp_path / "state"}"\nport = {free_port()}\n' + text)
    return subprocess.run(
        [FEDGATE, "--config", str(cfg), *args, "serve"],
        capture_output=True,
        text=True,
        timeout=60,
        env={"PATH": "/usr/bin:/bin", **(env or {})},
    )


def test_serve_stops_on_a_misspelt_option_with_one_line(tmp_path: Path) -> None:
    res = _serve(tmp_path, POSIX.replace("/srv", str(tmp_path)) + "roott = '/x'\n")
    assert res.returncode == 2
    lines = res.stderr.strip().splitlines()
    assert lines == [
        f"fedgate: configuration error: {tmp_path / 'fedgate.toml'}: [mounts.data] roott: "
        "unknown posix option; did you mean 'root'?"
    ], res.stderr
    assert not (tmp_path / "state").exists()  # nothing started on a half-read config


def test_serve_stops_on_a_value_the_adapter_refuses(tmp_path: Path) -> None:
    res = _serve(tmp_path, S3 + "part_size = 1024\n")
    assert res.returncode == 2
    assert res.stderr.count("\n") == 1 and "[mounts.data]: ValueError: " in res.stderr
    assert "part_size" in res.stderr


def test_a_bad_database_url_is_one_line_and_debug_shows_the_trace(tmp_path: Path) -> None:
    text = '[mounts.local]\ntype = "posix"\nroot = "' + str(tmp_path) + '"\n'
    env = {"FEDGATE_DATABASE_URL": "mysql://root:hunter2@db/fedgate"}
    res = _serve(tmp_path, text, env=env)
    assert res.returncode == 1
    err = [line for line in res.stderr.splitlines() if not line.startswith("{")]
    assert err == [
        "fedgate: cannot start: StoreError: database URL must start with sqlite:// or postgresql://"
    ], res.stderr
    assert "Traceback" not in res.stderr and "hunter2" not in res.stderr
    debug = _serve(tmp_path, text, "--debug", env=env)
    assert debug.returncode != 0 and "Traceback" in debug.stderr
