"""The settings schema (builder/settings.py): every key of depot.toml and of each sidecar kind,
declared once, documented in docs/repo-layout.md, and checked strictly with messages that name
the file, the table and the key."""

from __future__ import annotations

import pickle
import re
import tomllib
from collections import defaultdict
from pathlib import Path

import pytest

from builder.build import build
from builder.errors import FormatError, SettingsError
from builder.model import StoreSettings
from builder.settings import (
    SIDECARS,
    TABLES,
    TABLES_OF_SETTINGS,
    check_config,
    load_settings,
    parse_settings,
    validate_settings,
    validate_sidecar,
)
from builder.sidecars import read_sidecar, write_sidecar
from tests.support.paths import DEMO_REPO, PROJECT
from tests.support.repos import add_firmware, add_module, copy_demo, run_depot

DOC = PROJECT / "docs" / "repo-layout.md"


def problems(text: str) -> list[str]:
    settings, found = validate_settings(tomllib.loads(text))
    assert (settings is None) == bool(found)
    return found


# -- the docs list every declared key -----------------------------------------------------------


def documented_keys() -> dict[tuple[str, str], set[str]]:
    """(section, list of tables or "") → the keys in the doc's tables under it. Sections are
    ``### [table]`` headings and ``#### `kind` sidecar`` headings; a line ``Each entry of `x```
    (or ``of `x` and of `y```) starts the table of those lists' entries."""
    keys: dict[tuple[str, str], set[str]] = defaultdict(set)
    section, entries = "", ("",)
    for line in DOC.read_text(encoding="utf-8").splitlines():
        if m := re.match(r"^### \[(\w+)\]$", line):
            section, entries = f"[{m[1]}]", ("",)
        elif m := re.match(r"^#### `([\w-]+)` sidecar$", line):
            section, entries = f"sidecar {m[1]}", ("",)
        elif line.startswith("#"):
            section = ""
        elif line.startswith("Each entry of "):
            entries = tuple(re.findall(r"`(\w+)`", line.split(":")[0].split("(")[0]))
        elif section and (m := re.match(r"^\| `(\w+)` \|", line)):
            for name in entries:
                keys[(section, name)].add(m[1])
    return keys


def test_every_declared_option_is_documented() -> None:
    documented = documented_keys()
    missing = []
    for table in TABLES_OF_SETTINGS:
        for option in table.options:
            if option.key not in documented[(f"[{table.name}]", "")]:
                missing.append(f"[{table.name}] {option.key}")
            for item in option.items:
                if item.key not in documented[(f"[{table.name}]", option.key)]:
                    missing.append(f"[{table.name}] {option.key}[].{item.key}")
    for kind in SIDECARS.values():
        for option in kind.options:
            if option.key not in documented[(f"sidecar {kind.kind}", "")]:
                missing.append(f"{kind.kind} sidecar {option.key}")
    assert missing == []


def test_the_docs_list_no_key_the_schema_lacks() -> None:
    declared: dict[tuple[str, str], set[str]] = defaultdict(set)
    for table in TABLES_OF_SETTINGS:
        for option in table.options:
            declared[(f"[{table.name}]", "")].add(option.key)
            declared[(f"[{table.name}]", option.key)] |= {i.key for i in option.items}
    for kind in SIDECARS.values():
        declared[(f"sidecar {kind.kind}", "")] |= {o.key for o in kind.options}
    for where, keys in documented_keys().items():
        assert keys <= declared[where], where


def test_every_option_has_help_and_a_known_type() -> None:
    for table in TABLES_OF_SETTINGS:
        for option in table.options:
            assert option.help and option.described_type
            assert (option.type == TABLES) == bool(option.items)


# -- defaults -------------------------------------------------------------------------------------


def test_no_depot_toml_means_the_declared_defaults(tmp_path: Path) -> None:
    settings = load_settings(tmp_path)
    assert settings == StoreSettings() == parse_settings({}) == parse_settings({"qt": {}, "portal": {}})
    assert check_config(tmp_path) == []
    for table in TABLES_OF_SETTINGS:
        holder = getattr(settings, table.field) if table.nested else settings
        for option in table.options:
            value = getattr(holder, option.key if table.nested else option.field_name)
            assert value == option.default, (table.name, option.key)
    assert settings.qt_max_upload_bytes is None and settings.portal.warn_apk_bytes is None
    assert settings.ota_feed_base_url == ""


def test_settings_stay_hashable_and_picklable() -> None:
    settings = load_settings(DEMO_REPO)
    assert pickle.loads(pickle.dumps(settings)) == settings
    assert hash(settings) == hash(load_settings(DEMO_REPO))
    assert not hasattr(settings, "raw")


def test_the_digest_follows_every_setting_but_the_secret() -> None:
    base = parse_settings({})
    assert parse_settings({"portal": {"warn_apk_bytes": 5}}).digest != base.digest
    assert parse_settings({"store": {"base_url": "https://x.example"}}).digest != base.digest
    assert parse_settings({"qt": {"store_signing_password": "hunter22"}}).digest == base.digest


# -- the demo store -------------------------------------------------------------------------------


def test_the_demo_depot_toml_is_valid() -> None:
    assert check_config(DEMO_REPO) == []
    settings = load_settings(DEMO_REPO)
    assert settings.name == "Depot Demo Store"
    assert [c.name for c in settings.categories] == ["Entertainment", "Tools"]


def test_the_demo_sidecars_are_valid() -> None:
    kinds = {
        "apps": "qt-app",
        "android": "apk",
        "modules": "module",
        "firmware": "firmware",
        "builds": "ota-build",
    }
    seen = 0
    for sidecar in sorted(DEMO_REPO.rglob("*.toml")):
        if sidecar.name == "depot.toml":
            continue
        kind = kinds[sidecar.relative_to(DEMO_REPO).parts[0]]
        read_sidecar(sidecar.with_name(sidecar.name.removesuffix(".toml")), kind)
        seen += 1
    assert seen >= 3


# -- messages ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[store]\nname = 5\n", "[store] name must be a string, not 5"),
        (
            '[store]\nbase_url = "ftp://x.example"\n',
            '[store] base_url must be an http:// or https:// URL, not "ftp://x.example"',
        ),
        ("[qt]\napi_version = 'two'\n", '[qt] api_version must be a positive integer, not "two"'),
        ("[qt]\napi_version = true\n", "[qt] api_version must be a positive integer, not true"),
        ('[qt]\nmaintenance = "false"\n', '[qt] maintenance must be true or false, not "false"'),
        ('[qt]\nmax_upload_bytes = "lots"\n', '[qt] max_upload_bytes must be a positive integer, not "lots"'),
        ("[qt]\ndownload_expiry = 0\n", "[qt] download_expiry must be a positive integer, not 0"),
        (
            "[qt]\nstore_signing_password = 1234\n",
            "[qt] store_signing_password must be a string, not an integer",
        ),
        ("[qt]\ncategories = [{ name = 3 }]\n", "[qt] categories[0].name must be a string, not 3"),
        (
            "[qt]\ncategories = [{ name = 'a', icon = '../x.png' }]\n",
            '[qt] categories[0].icon must be a path relative to repo/ that stays inside it, not "../x.png"',
        ),
        ("[device]\nplatforms = 'pi64'\n", '[device] platforms must be a list of tables, not "pi64"'),
        ("[device]\nplatforms = ['pi64']\n", '[device] platforms[0] must be a table, not "pi64"'),
        ("[ota]\nallowed_versions = ['v1', 2]\n", "[ota] allowed_versions[1] must be a string, not 2"),
        (
            "[ota]\ndevices = [{ codename = 'a', maintained = 'yes' }]\n",
            '[ota] devices[0].maintained must be true or false, not "yes"',
        ),
        (
            "[ota]\nfilename_pattern = '(?P<version>x)(?P<codename>y)(?P<variant>z)'\n",
            "[ota] filename_pattern lacks the named group(s) (?P<date>...)",
        ),
        (
            "[portal]\nforbidden_permissions = 'android.permission.READ_SMS'\n",
            '[portal] forbidden_permissions must be a list of strings, not "android.permission.READ_SMS"',
        ),
        ("[portal]\nmax_apk_bytes = -1\n", "[portal] max_apk_bytes must be a positive integer, not -1"),
        ("portal = 5\n", "[portal] must be a table, not 5"),
    ],
)
def test_a_wrong_value_gets_its_exact_message(text: str, message: str) -> None:
    assert problems(text) == [message]


def test_a_broken_regular_expression_says_so() -> None:
    [message] = problems("[ota]\nfilename_pattern = '(?P<version>'\n")
    assert message.startswith("[ota] filename_pattern is not a valid regular expression (")


def test_unknown_keys_and_tables_are_errors() -> None:
    assert problems("[qt]\nmaxupload = 1\n") == ["[qt] unknown key 'maxupload'"]
    assert problems("[shop]\nname = 'x'\n") == ["unknown table [shop]"]
    assert problems("name = 'x'\n") == ["unknown key 'name' outside any table"]
    assert problems("[ota]\ndevices = [{ codename = 'a', colour = 'red' }]\n") == [
        "[ota] devices[0] unknown key 'colour'"
    ]


def test_list_entries_name_their_index() -> None:
    text = "[ota]\ndevices = [\n  { codename = 'a' },\n  { name = 'No codename' },\n]\n"
    assert problems(text) == ["[ota] devices[1] lacks the required key 'codename'"]
    assert problems("[[qt.vendors]]\nid = 'q'\n[[qt.vendors]]\nid = 'q'\n") == [
        '[qt] vendors[1] repeats the id "q"'
    ]


def test_every_problem_is_reported_at_once(tmp_path: Path) -> None:
    (tmp_path / "depot.toml").write_text(
        '[store]\nname = 5\n\n[qt]\nmaxupload = 1\nmaintenance = "false"\n\n'
        '[ota]\ndevices = [{ name = "x" }]\n'
    )
    expected = [
        "depot.toml: [store] name must be a string, not 5",
        "depot.toml: [qt] unknown key 'maxupload'",
        'depot.toml: [qt] maintenance must be true or false, not "false"',
        "depot.toml: [ota] devices[0] lacks the required key 'codename'",
    ]
    assert check_config(tmp_path) == expected
    with pytest.raises(SettingsError) as raised:
        load_settings(tmp_path)
    assert str(raised.value) == "\n".join(expected)


def test_a_toml_syntax_error_names_the_file(tmp_path: Path) -> None:
    (tmp_path / "depot.toml").write_text("[store\n")
    [message] = check_config(tmp_path)
    assert message.startswith("depot.toml: ")


def test_values_are_typed_and_base_urls_lose_their_slash() -> None:
    settings = parse_settings(
        tomllib.loads(
            "[store]\nbase_url = 'https://store.example/'\n"
            "[qt]\nmax_upload_bytes = 1024\nstore_signing_pkcs12 = 'store.p12'\n"
            "vendors = [{ id = 'qt' }]\n"
            "[ota]\ndevices = [{ codename = 'bullhead' }]\n"
            "[portal]\nwarn_apk_bytes = 10\nforbidden_permissions = ['android.permission.READ_SMS']\n"
        )
    )
    assert settings.store_base_url == "https://store.example"
    assert settings.ota_feed_base_url == "https://store.example"
    assert settings.qt_max_upload_bytes == 1024 and settings.qt_store_signing_pkcs12 == "store.p12"
    assert settings.vendors[0].name == "qt" and settings.ota_devices[0].name == "bullhead"
    assert settings.portal.warn_apk_bytes == 10
    assert settings.portal.forbidden_permissions == ("android.permission.READ_SMS",)
    with_ota = parse_settings(
        {"store": {"base_url": "https://a.example"}, "ota": {"base_url": "https://b.example"}}
    )
    assert with_ota.ota_feed_base_url == "https://b.example"


def test_depot_build_prints_the_schemas_message(tmp_path: Path) -> None:
    repo = copy_demo(tmp_path / "repo")
    toml = repo / "depot.toml"
    toml.write_text(toml.read_text().replace("[qt]\n", '[qt]\nmax_upload_bytes = "lots"\n', 1))
    done = run_depot("build", cwd=tmp_path)
    assert done.returncode == 1
    assert done.stderr == 'Error: depot.toml: [qt] max_upload_bytes must be a positive integer, not "lots"\n'
    assert not (tmp_path / "site").exists()


# -- sidecars -------------------------------------------------------------------------------------


def test_sidecar_messages_name_the_file_and_every_key() -> None:
    with pytest.raises(FormatError) as raised:
        validate_sidecar("module", {"descripton": "x", "optional": "yes"}, "ax.1.0.pi64.tar.gz.toml")
    assert str(raised.value) == (
        "sidecar ax.1.0.pi64.tar.gz.toml: unknown key 'descripton';"
        ' optional must be true or false, not "yes"'
    )
    with pytest.raises(FormatError, match=r'countries\[1\] must match \^\[A-Z\]\{2\}\$, not "../x"'):
        validate_sidecar("apk", {"countries": ["DE", "../x"]}, "a-1.apk.toml")
    with pytest.raises(FormatError, match=r'status must be one of "draft", .*, not "Live"'):
        validate_sidecar("apk", {"status": "Live"}, "a-1.apk.toml")
    assert validate_sidecar("ota-build", {"enabled": False, "tested_on": "notes"}, "b.zip.toml") == {
        "enabled": False,
        "build_id": None,
    }


@pytest.mark.parametrize(
    ("sidecar", "reason"),
    [
        ('descripton = "typo"\n', "sidecar ax.1.0.pi64.tar.gz.toml: unknown key 'descripton'"),
        ("description = 5\n", "sidecar ax.1.0.pi64.tar.gz.toml: description must be a string, not 5"),
        (
            'optional = "false"\n',
            'sidecar ax.1.0.pi64.tar.gz.toml: optional must be true or false, not "false"',
        ),
    ],
)
def test_a_bad_module_sidecar_skips_the_module(tmp_path: Path, sidecar: str, reason: str) -> None:
    repo, site = tmp_path / "repo", tmp_path / "site"
    path = add_module(repo, "ax", "1.0", "pi64")
    add_module(repo, "ok", "1.0", "pi64")
    Path(str(path) + ".toml").write_text(sidecar)
    result = build(repo, site)
    assert result.skipped == {"modules/ax.1.0.pi64.tar.gz": reason}


def test_a_bad_firmware_sidecar_skips_the_image(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    path = add_firmware(repo, "fw", "1.0", "pi64")
    Path(str(path) + ".toml").write_text("descripton = 'x'\n")
    assert build(repo, tmp_path / "site").skipped == {
        "firmware/fw.1.0.pi64.bin": "sidecar fw.1.0.pi64.bin.toml: unknown key 'descripton'"
    }


def test_a_bad_qt_sidecar_skips_the_app_with_a_warning(tmp_path: Path) -> None:
    repo = copy_demo(tmp_path / "repo")
    sidecar = repo / "apps" / "com.example.plain.appkg.toml"
    sidecar.write_text(sidecar.read_text() + "colour = 'red'\n")
    done = run_depot("build", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert (
        "warning: skipped apps/com.example.plain.appkg: "
        "sidecar com.example.plain.appkg.toml: unknown key 'colour'" in done.stderr
    )


def test_a_bad_apk_sidecar_skips_the_apk(tmp_path: Path) -> None:
    repo = copy_demo(tmp_path / "repo")
    [sidecar] = (repo / "android").glob("*.apk.toml")
    sidecar.write_text(sidecar.read_text().replace('status = "live"', "status = true"))
    relpath = "android/" + sidecar.name.removesuffix(".toml")
    reason = build(repo, tmp_path / "site").skipped[relpath]
    assert reason.startswith(f"sidecar {sidecar.name}: status must be a string, not true")


def test_an_ota_sidecar_keeps_its_notes_but_checks_its_keys(tmp_path: Path) -> None:
    package = tmp_path / "b.zip"
    (tmp_path / "b.zip.toml").write_text('enabled = "no"\nnote = "tested"\n')
    with pytest.raises(
        FormatError, match=re.escape('sidecar b.zip.toml: enabled must be true or false, not "no"')
    ):
        read_sidecar(package, "ota-build")
    (tmp_path / "b.zip.toml").write_text("build_id = 0\n")
    with pytest.raises(FormatError, match="build_id must be a positive integer, not 0"):
        read_sidecar(package, "ota-build")
    assert read_sidecar(package) == {"build_id": 0}  # as written, for a runtime to change and write back


@pytest.mark.parametrize(
    ("kind", "fields"),
    [
        # what POST /upload, the portal's release and shipper's enable/disable write
        (
            "qt-app",
            {
                "category": "Tools",
                "vendor": "Qt",
                "brief_description": "b",
                "description": "d",
                "purchase_id": "p",
                "updated": "2026-11-25",
            },
        ),
        (
            "apk",
            {
                "status": "live",
                "version_id": "abc",
                "countries": ["AT", "DE"],
                "vehicle_contexts": [],
                "released": "2026-11-01T00:00:00Z",
            },
        ),
        ("ota-build", {"enabled": False, "build_id": 7, "tested_on": "2020-06-09"}),
    ],
)
def test_what_the_runtime_writes_validates(tmp_path: Path, kind: str, fields: dict) -> None:
    write_sidecar(tmp_path / "p", fields, kind=kind)
    assert read_sidecar(tmp_path / "p", kind, defaults=False).keys() <= fields.keys()


def test_the_writer_refuses_what_the_reader_would_refuse(tmp_path: Path) -> None:
    with pytest.raises(FormatError, match="unknown key 'colour'"):
        write_sidecar(tmp_path / "p", {"colour": "red"}, kind="qt-app")
    assert not (tmp_path / "p.toml").exists()
