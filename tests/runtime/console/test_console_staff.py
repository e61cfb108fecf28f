"""The store team's console pages (runtime.console.staff) in Starlette's TestClient: every action
through the same service functions as the API and the CLI, the refusals (role, CSRF, bad input
in the dialect's words) and that a refused action changes nothing."""

from __future__ import annotations

import json
import re
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from builder.qt.pack import pack_package, package_entries, tar_bytes
from runtime.accounts import Accounts
from runtime.cli import main as depot
from runtime.console.session import COOKIE
from runtime.dialects import load_dialects
from runtime.storage import SCHEMAS, open_database
from runtime.tokens import Tokens
from runtime.uploads import incoming_folder
from tests.support.apk_factory import fixture_like
from tests.support.console import ACCOUNTS, PASSWORD, ConsoleStore, console_store

POLICY = '\n[portal]\nreview_permissions = ["android.permission.READ_CALENDAR"]\n'
QT_FIELDS = {"description": "<p>Long</p>", "short-description": "Brief", "category": "Tools", "vendor": "Qt"}
STAFF_GETS = ("/console/review", "/console/qt", "/console/users", "/console/tokens")


@pytest.fixture
def store(tmp_path: Path) -> Iterator[ConsoleStore]:
    with console_store(tmp_path) as s:
        with (s.repo / "depot.toml").open("a") as f:
            f.write(POLICY)
        yield s


def db_of(store: ConsoleStore) -> Any:
    load_dialects()
    return open_database(store.data)


def ci_token(store: ConsoleStore, name: str = "dev") -> str:
    db = db_of(store)
    user = Accounts(db).get(name)
    assert user is not None
    return Tokens(db).create(user.id, "ci", name="pipeline")[1]


def upload_apk(store: ConsoleStore, token: str, apk: bytes) -> str:
    """An APK through the CI portal's API; the id of its version once validation ran (the
    TestClient runs the background validation before it returns)."""
    answer = store.client.post(
        "/portal/api/uploads/ci",
        files={"apk": ("app.apk", apk, "application/vnd.android.package-archive")},
        headers={"Authorization": f"Bearer {token}"},
    )
    assert answer.status_code == 201, answer.text
    return str(answer.json()["version"]["id"])


def status_of(store: ConsoleStore, version_id: str) -> str:
    row = db_of(store).execute("SELECT status FROM portal_versions WHERE id = ?", [version_id]).fetchone()
    return str(row[0])


def in_review(store: ConsoleStore) -> str:
    version_id = upload_apk(store, ci_token(store), fixture_like("com.politedroid_3.apk"))
    assert status_of(store, version_id) == "in_review"
    return version_id


def post(store: ConsoleStore, path: str, csrf: str | None, **fields: Any) -> Any:
    data = {**fields, **({"csrf": csrf} if csrf is not None else {})}
    return store.client.post(path, data=data, follow_redirects=False)


def qt_upload(store: ConsoleStore, csrf: str | None, package: bytes | None, **fields: str | None) -> Any:
    data = {**QT_FIELDS, **fields, **({"csrf": csrf} if csrf is not None else {})}
    data = {k: v for k, v in data.items() if v is not None}
    files = {"package": ("app.appkg", package or b"", "application/octet-stream")}
    return store.client.post("/console/qt/upload", data=data, files=files, follow_redirects=False)


def apps_files(store: ConsoleStore) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted((store.repo / "apps").iterdir())}


def incoming_files(store: ConsoleStore) -> list[str]:
    folder = incoming_folder(store.data, "qt")
    return sorted(p.name for p in folder.iterdir() if p.is_file())


def message(html: str, element_id: str) -> str:
    found = re.search(rf'id="{element_id}">(.*?)</p>', html, re.S)
    assert found, html[:2000]
    return re.sub(r"\s+", " ", found[1].replace("&#39;", "'").replace("&#34;", '"')).strip()


# -- the guard -----------------------------------------------------------------------------------------


def staff_forms(store: ConsoleStore, version_id: str) -> list[tuple[str, dict[str, str]]]:
    db = db_of(store)
    finding = db.execute("SELECT id FROM portal_findings WHERE version_id = ?", [version_id]).fetchone()[0]
    dev = Accounts(db).get("dev")
    assert dev is not None
    token = Tokens(db).all(dev.id, "ci")[0].id
    some_qt = next(iter(json.loads((store.site / "qt" / "variants.json").read_text())["variants"]))
    v = f"/console/review/{version_id}"
    return [
        (f"{v}/approve", {}),
        (f"{v}/reject", {"reason": "no"}),
        (f"{v}/release", {"country": "DE"}),
        (f"{v}/withdraw", {}),
        (f"{v}/findings/{finding}/resolve", {}),
        ("/console/qt/remove", {"purchase_id": some_qt}),
        ("/console/users", {"name": "intruder", "password": "long enough password"}),
        (f"/console/users/{dev.id}/disable", {}),
        (f"/console/users/{dev.id}/staff", {"staff": "1"}),
        (f"/console/users/{dev.id}/devices", {"device": "bullhead"}),
        (f"/console/users/{dev.id}/password", {"password": "a new password"}),
        ("/console/tokens", {"user": "dev"}),
        (f"/console/tokens/{token}/revoke", {}),
    ]


def snapshot(store: ConsoleStore) -> tuple[Any, ...]:
    db = db_of(store)
    return (
        db.execute("SELECT id, status, countries FROM portal_versions ORDER BY id").fetchall(),
        db.execute("SELECT id, status FROM portal_findings ORDER BY id").fetchall(),
        db.execute("SELECT name, password_hash, staff, devices, disabled FROM users ORDER BY id").fetchall(),
        db.execute(
            "SELECT id, revoked FROM tokens WHERE purpose != 'console_session' ORDER BY id"
        ).fetchall(),
        apps_files(store),
        sorted(p.name for p in (store.repo / "android").iterdir()),
    )


@pytest.mark.parametrize("name", ["dev", "maint"])
def test_developers_and_maintainers_get_403_on_every_staff_page_and_form(
    store: ConsoleStore, name: str
) -> None:
    version_id = in_review(store)
    before = snapshot(store)
    csrf = store.sign_in(name)
    for path in (*STAFF_GETS, f"/console/review/{version_id}"):
        assert store.client.get(path).status_code == 403, path
    for path, fields in staff_forms(store, version_id):
        answer = post(store, path, csrf, **fields)
        assert answer.status_code == 403 and "not for your account" in answer.text, path
    upload = qt_upload(store, csrf, pack_package("com.example.intruder"))
    assert upload.status_code == 403
    assert snapshot(store) == before
    # and the menu does not offer them
    home = store.client.get("/console/").text
    assert 'href="/console/review"' not in home and 'href="/console/users"' not in home


def test_signed_out_visitors_are_sent_to_sign_in_and_their_posts_refused(store: ConsoleStore) -> None:
    for path in STAFF_GETS:
        answer = store.client.get(path, follow_redirects=False)
        assert answer.status_code == 303 and answer.headers["location"].startswith("/console/login?next=")
    assert post(store, "/console/users", None, name="x", password="long enough password").status_code == 403
    assert qt_upload(store, None, pack_package("com.example.anon")).status_code == 403


def test_forms_without_the_csrf_token_are_refused_and_change_nothing(store: ConsoleStore) -> None:
    version_id = in_review(store)
    store.sign_in("staff")
    before = snapshot(store)
    for path, fields in staff_forms(store, version_id):
        for csrf in (None, "0" * 64):
            answer = post(store, path, csrf, **fields)
            assert answer.status_code == 403 and "out of date" in answer.text, path
    for csrf in (None, "f" * 64):
        answer = qt_upload(store, csrf, pack_package("com.example.forged"))
        assert answer.status_code == 403 and "out of date" in answer.text
    cross = store.client.post(
        f"/console/review/{version_id}/approve",
        data={"csrf": store.csrf()},
        headers={"Origin": "https://evil.example"},
    )
    assert cross.status_code == 403
    assert snapshot(store) == before
    assert incoming_files(store) == []  # the forged upload's package was received and dropped


# -- review -------------------------------------------------------------------------------------------


def test_the_queue_shows_versions_in_review_with_their_facts(store: ConsoleStore) -> None:
    version_id = in_review(store)
    store.sign_in("staff")
    queue = store.client.get("/console/review")
    assert queue.status_code == 200
    html = queue.text
    assert f'href="/console/review/{version_id}"' in html and "com.politedroid 3" in html
    assert "android.permission.READ_CALENDAR" in html  # permissions
    assert "review_permission" in html or "warning" in html  # the finding the policy raises
    size = db_of(store).execute("SELECT size FROM portal_versions WHERE id = ?", [version_id]).fetchone()[0]
    assert f"{size} bytes" in html
    assert "<td>3</td>" in html  # minSdk
    assert "CN=" in html or "O=" in html  # the signer's subject
    assert "No version is approved" in store.client.get("/console/review?status=approved").text
    assert version_id in store.client.get("/console/review?status=all").text


def test_bad_ids_are_a_404_page(store: ConsoleStore) -> None:
    version_id = in_review(store)
    csrf = store.sign_in("staff")
    for path in ("/console/review/nope", "/console/review/" + "0" * 32):
        answer = store.client.get(path)
        assert answer.status_code == 404 and "There is no version" in answer.text
    assert post(store, "/console/review/nope/approve", csrf).status_code == 404
    other = post(store, f"/console/review/{version_id}/findings/nope/resolve", csrf)
    assert other.status_code == 404
    assert post(store, "/console/tokens/999999/revoke", csrf).status_code == 404
    assert post(store, "/console/tokens/abc/revoke", csrf).status_code == 404
    assert post(store, "/console/users/999999/disable", csrf).status_code == 404


def test_resolve_approve_release_change_targets_and_withdraw(store: ConsoleStore) -> None:
    version_id = in_review(store)
    csrf = store.sign_in("staff")
    page = f"/console/review/{version_id}"
    detail = store.client.get(page).text
    finding = re.search(r'data-finding="([0-9a-f]+)"', detail)
    assert finding and 'id="approve"' in detail and "Resolve" in detail

    resolved = post(store, f"{page}/findings/{finding[1]}/resolve", csrf)
    assert resolved.status_code == 303 and resolved.headers["location"] == f"{page}?done=resolved"
    again = post(store, f"{page}/findings/{finding[1]}/resolve", csrf)
    assert again.status_code == 400 and "is already resolved" in message(again.text, "action-error")

    # release before approval: runtime.portal.review's words
    early = post(store, f"{page}/release", csrf, country="DE")
    assert early.status_code == 400
    assert "cannot release version" in early.text and "it is in_review" in early.text

    assert post(store, f"{page}/approve", csrf).headers["location"] == f"{page}?done=approved"
    assert status_of(store, version_id) == "approved"
    twice = post(store, f"{page}/approve", csrf)
    assert twice.status_code == 400 and "cannot approve version" in message(twice.text, "action-error")

    # bad targets: parse_targets' messages, the form filled in again, nothing released
    none = post(store, f"{page}/release", csrf, countries_other="")
    assert none.status_code == 400 and "a release needs at least one country" in none.text
    bad = post(store, f"{page}/release", csrf, countries_other="Germany", contexts_other="sedan")
    assert bad.status_code == 400
    assert "invalid target 'GERMANY'" in message(bad.text, "action-error")
    assert 'value="Germany"' in bad.text and 'value="sedan"' in bad.text
    assert status_of(store, version_id) == "approved"
    assert not (store.repo / "android" / "com.politedroid-3.apk").exists()

    released = post(
        store, f"{page}/release", csrf, country=["AT"], countries_other="de", contexts_other="suv"
    )
    assert released.status_code == 303 and released.headers["location"] == f"{page}?done=released"
    assert status_of(store, version_id) == "live"
    sidecar = tomllib.loads((store.repo / "android" / "com.politedroid-3.apk.toml").read_text())
    assert sidecar["countries"] == ["AT", "DE"] and sidecar["vehicle_contexts"] == ["suv"]
    assert (store.repo / "android" / "com.politedroid-3.apk").exists()
    germany = json.loads((store.site / "android" / "countries" / "DE.json").read_text())
    assert "com.politedroid" in json.dumps(germany)  # the catalog was rebuilt
    shown = store.client.get(f"{page}?done=released").text
    assert "The version is live" in shown and 'value="AT" id="country-AT" checked' in shown
    assert 'value="suv" id="context-suv" checked' in shown

    # change the targets of the live version: DE only
    changed = post(store, f"{page}/release", csrf, country=["DE"], context=[])
    assert changed.status_code == 303
    sidecar = tomllib.loads((store.repo / "android" / "com.politedroid-3.apk.toml").read_text())
    assert sidecar["countries"] == ["DE"] and sidecar["vehicle_contexts"] == []

    withdrawn = post(store, f"{page}/withdraw", csrf)
    assert withdrawn.headers["location"] == f"{page}?done=withdrawn"
    assert status_of(store, version_id) == "approved"
    assert not (store.repo / "android" / "com.politedroid-3.apk").exists()
    assert (
        not (store.site / "android" / "countries" / "DE.json").exists()
        or "com.politedroid" not in (store.site / "android" / "countries" / "DE.json").read_text()
    )
    history = store.client.get(page).text
    for action in ("resolve", "approve", "release", "withdraw"):
        assert f"console:staff: {action}" in history


def test_reject_needs_a_reason_and_keeps_the_typed_text(store: ConsoleStore) -> None:
    version_id = in_review(store)
    csrf = store.sign_in("staff")
    page = f"/console/review/{version_id}"
    empty = post(store, f"{page}/reject", csrf, reason="   ")
    assert empty.status_code == 400
    assert "a rejection needs a reason the developer can act on" in message(empty.text, "action-error")
    assert status_of(store, version_id) == "in_review"
    assert post(store, f"{page}/reject", csrf, reason="Drop READ_CALENDAR <b>").status_code == 303
    assert status_of(store, version_id) == "rejected"
    shown = store.client.get(page).text
    assert "Drop READ_CALENDAR &lt;b&gt;" in shown  # escaped
    late = post(store, f"{page}/approve", csrf)
    assert late.status_code == 400 and "it is rejected" in late.text


# -- Qt apps ------------------------------------------------------------------------------------------


def test_qt_page_lists_the_catalog_and_the_settings_lists(store: ConsoleStore) -> None:
    store.sign_in("staff")
    html = store.client.get("/console/qt").text
    for app in ("com.example.plain", "com.example.native", "com.example.tagged"):
        assert f'data-app="{app}"' in html
    assert "<option>Entertainment</option>" in html and "<option>Tools</option>" in html
    assert "<option>Qt</option>" in html and "repo/depot.toml" in html


def test_qt_upload_in_the_reference_words_and_nothing_stored_on_refusal(store: ConsoleStore) -> None:
    csrf = store.sign_in("staff")
    before = apps_files(store)
    package = pack_package("com.example.console", name={"en": "Console App"}, version="1.2.3")
    for fields, expected in (
        ({"description": None}, "no description"),
        ({"short-description": None}, "no short description"),
        ({"category": None}, "no category"),
        ({"vendor": None}, "no vendor"),
        ({"category": "Nope"}, "Non-existing category"),
        ({"vendor": "Nope"}, "Non-existing vendor"),
    ):
        answer = qt_upload(store, csrf, package, **fields)
        assert answer.status_code == 400 and message(answer.text, "qt-error") == expected, fields
    nothing = qt_upload(store, csrf, None)
    assert nothing.status_code == 400 and message(nothing.text, "qt-error") == "no package to upload"
    broken = qt_upload(store, csrf, tar_bytes(package_entries("com.example.bad", digest="0" * 64)))
    assert broken.status_code == 400 and message(broken.text, "qt-error").startswith(
        "Package validation failed"
    )
    kept = qt_upload(store, csrf, b"garbage", **{"short-description": "Keep me"})
    assert 'value="Keep me"' in kept.text and "&lt;p&gt;Long&lt;/p&gt;" in kept.text
    assert apps_files(store) == before

    stored = qt_upload(store, csrf, package, description="<b>long</b>", **{"short-description": "brief"})
    assert stored.status_code == 303 and stored.headers["location"] == "/console/qt?done=uploaded"
    sidecar = tomllib.loads((store.repo / "apps" / "com.example.console_All_.appkg.toml").read_text())
    assert sidecar["description"] == "<b>long</b>" and sidecar["brief_description"] == "brief"
    assert sidecar["category"] == "Tools" and sidecar["vendor"] == "Qt"
    listed = store.client.get("/console/qt?done=uploaded").text
    assert 'data-app="com.example.console"' in listed and "Console App" in listed and "1.2.3" in listed
    assert incoming_files(store) == []


def test_qt_upload_over_the_limit_and_malformed(store: ConsoleStore) -> None:
    csrf = store.sign_in("staff")
    with (store.repo / "depot.toml").open("a") as f:
        f.write("")
    text = (store.repo / "depot.toml").read_text().replace("[qt]\n", "[qt]\nmax_upload_bytes = 4096\n", 1)
    (store.repo / "depot.toml").write_text(text)
    before = apps_files(store)
    big = qt_upload(store, csrf, b"x" * 10_000)
    assert (
        big.status_code == 413
        and message(big.text, "qt-error") == "package too large: the limit is 4096 bytes"
    )
    malformed = store.client.post(
        "/console/qt/upload",
        content=b'--b\r\nContent-Disposition: form-data; name="csrf"\r\n\r\n' + csrf.encode(),
        headers={"Content-Type": "multipart/form-data; boundary=b"},
    )
    assert malformed.status_code == 400 and message(malformed.text, "qt-error") == "malformed form data"
    assert apps_files(store) == before


def test_qt_remove_takes_package_and_sidecar_out(store: ConsoleStore) -> None:
    csrf = store.sign_in("staff")
    variants = json.loads((store.site / "qt" / "variants.json").read_text())["variants"]
    purchase_id = next(p for p, v in variants.items() if v["id"] == "com.example.plain")
    removed = post(store, "/console/qt/remove", csrf, purchase_id=purchase_id)
    assert removed.status_code == 303 and removed.headers["location"] == "/console/qt?done=removed"
    assert not (store.repo / "apps" / "com.example.plain.appkg").exists()
    assert not (store.repo / "apps" / "com.example.plain.appkg.toml").exists()
    assert 'data-app="com.example.plain"' not in store.client.get("/console/qt").text
    assert purchase_id not in (store.site / "qt" / "variants.json").read_text()
    again = post(store, "/console/qt/remove", csrf, purchase_id=purchase_id)
    assert again.status_code == 404 and "removed already" in again.text
    assert (store.repo / "apps" / "com.example.native.appkg").exists()


# -- users --------------------------------------------------------------------------------------------


def user(store: ConsoleStore, name: str) -> Any:
    return Accounts(db_of(store)).get(name)


def test_create_users_with_a_typed_or_generated_password(store: ConsoleStore) -> None:
    csrf = store.sign_in("staff")
    page = store.client.get("/console/users").text
    for name in ("staff", "dev", "maint"):
        assert f'data-user="{name}"' in page
    assert 'value="bullhead"' in page  # the OTA devices of depot.toml
    made = post(store, "/console/users", csrf, name="newbie", password="", staff="1", device=["bullhead"])
    assert made.status_code == 200
    generated = message(made.text, "password-secret")
    assert len(generated) >= 16
    created = user(store, "newbie")
    assert created.staff and created.devices == ("bullhead",)
    assert Accounts(db_of(store)).authenticate("newbie", generated) is not None

    taken = post(store, "/console/users", csrf, name="dev", password="another password")
    assert taken.status_code == 400 and "a user 'dev' exists already" in message(taken.text, "users-error")
    short = post(store, "/console/users", csrf, name="shorty", password="short", device=["angler"])
    assert short.status_code == 400 and "at least 8 characters" in short.text
    assert 'value="shorty"' in short.text and 'id="new-device-angler" checked' in short.text
    bad = post(store, "/console/users", csrf, name="no spaces", password="long enough pw")
    assert bad.status_code == 400 and "invalid user name" in bad.text
    assert user(store, "shorty") is None and user(store, "no spaces") is None
    typed = post(store, "/console/users", csrf, name="typed", password="typed password 1")
    assert typed.status_code == 200 and "password-secret" not in typed.text
    assert Accounts(db_of(store)).authenticate("typed", "typed password 1") is not None


def test_disable_ends_sessions_and_tokens_and_enable_brings_tokens_back(store: ConsoleStore) -> None:
    token = ci_token(store)
    store.sign_in("dev")
    dev_cookie = store.client.cookies.get(COOKIE)
    store.client.cookies.clear()
    csrf = store.sign_in("staff")
    dev = user(store, "dev")

    disabled = post(store, f"/console/users/{dev.id}/disable", csrf)
    assert disabled.headers["location"] == "/console/users?done=disabled"
    assert user(store, "dev").disabled
    listing = store.client.get("/console/users?done=disabled").text
    assert "its tokens stop working" in listing
    # the API refuses the CI token with its own words, sign-in is refused, the session is gone
    refused = store.client.get("/portal/api/versions/x", headers={"Authorization": f"Bearer {token}"}).json()
    assert refused["error"]["code"] == "account_disabled"
    assert Accounts(db_of(store)).authenticate("dev", PASSWORD) is None
    staff_cookie = store.client.cookies.get(COOKIE)
    store.client.cookies.clear()
    store.client.cookies.set(COOKIE, dev_cookie)
    assert store.client.get("/console/", follow_redirects=False).status_code == 303
    wrong = store.client.post("/console/login", data={"name": "dev", "password": PASSWORD})
    assert wrong.status_code == 401
    store.client.cookies.clear()
    store.client.cookies.set(COOKIE, staff_cookie)

    assert post(store, f"/console/users/{dev.id}/enable", csrf).headers["location"].endswith("enabled")
    works = store.client.get("/portal/api/versions/x", headers={"Authorization": f"Bearer {token}"})
    assert works.json()["error"]["code"] == "version_not_found"  # the token works again
    assert Accounts(db_of(store)).authenticate("dev", PASSWORD) is not None

    me = user(store, "staff")
    yourself = post(store, f"/console/users/{me.id}/disable", csrf)
    assert yourself.status_code == 400 and "you cannot disable your own account" in yourself.text
    assert not user(store, "staff").disabled


def test_staff_flag_devices_and_password_reset(store: ConsoleStore) -> None:
    csrf = store.sign_in("staff")
    dev, me = user(store, "dev"), user(store, "staff")
    assert post(store, f"/console/users/{dev.id}/staff", csrf, staff="1").status_code == 303
    assert user(store, "dev").staff
    assert post(store, f"/console/users/{dev.id}/staff", csrf, staff="0").status_code == 303
    assert not user(store, "dev").staff
    mine = post(store, f"/console/users/{me.id}/staff", csrf, staff="0")
    assert mine.status_code == 400 and user(store, "staff").staff

    assert (
        post(store, f"/console/users/{dev.id}/devices", csrf, device=["angler", "bullhead"]).status_code
        == 303
    )
    assert user(store, "dev").devices == ("angler", "bullhead")
    assert post(store, f"/console/users/{dev.id}/devices", csrf).status_code == 303
    assert user(store, "dev").devices == ()

    short = post(store, f"/console/users/{dev.id}/password", csrf, password="short")
    assert short.status_code == 400 and "dev: the password must have at least 8 characters" in short.text
    assert Accounts(db_of(store)).authenticate("dev", PASSWORD) is not None
    reset = post(store, f"/console/users/{dev.id}/password", csrf, password="")
    assert reset.status_code == 200
    fresh = message(reset.text, "password-secret")
    assert Accounts(db_of(store)).authenticate("dev", PASSWORD) is None
    assert Accounts(db_of(store)).authenticate("dev", fresh) is not None


# -- tokens -------------------------------------------------------------------------------------------


def test_every_token_listed_created_and_revoked(store: ConsoleStore) -> None:
    token = ci_token(store)
    csrf = store.sign_in("staff")
    html = store.client.get("/console/tokens").text
    assert token[:14] in html and token not in html
    assert ">ci<" in html and ">console_session<" in html and ">pipeline<" in html
    only_ci = store.client.get("/console/tokens?purpose=ci").text
    assert "console_session" not in only_ci.split("Live tokens")[1].split("Create a CI token")[0]
    assert token[:14] not in store.client.get("/console/tokens?user=maint").text

    bad = post(store, "/console/tokens", csrf, user="dev", name="x", expires_days="0")
    assert bad.status_code == 400 and "expiry must be between 1 and 365 days" in bad.text
    bad_app = post(store, "/console/tokens", csrf, user="dev", app="not a package")
    assert bad_app.status_code == 400 and "is not an Android package name" in bad_app.text
    assert 'value="not a package"' in bad_app.text
    nobody = post(store, "/console/tokens", csrf, user="")
    assert nobody.status_code == 400 and "choose the account" in nobody.text

    made = post(
        store,
        "/console/tokens",
        csrf,
        user="dev",
        name="from-console",
        app="com.politedroid",
        expires_days="7",
    )
    assert made.status_code == 200
    secret = message(made.text, "token-secret")
    assert secret.startswith("depot_ci_")
    version_id = upload_apk(store, secret, fixture_like("com.politedroid_3.apk"))
    assert version_id

    db = db_of(store)
    created = next(t for t in Tokens(db).all(purpose="ci") if t.name == "from-console")
    assert created.scope == "com.politedroid" and created.expires
    revoked = post(store, f"/console/tokens/{created.id}/revoke", csrf)
    assert revoked.headers["location"] == "/console/tokens?done=revoked"
    answer = store.client.get(
        f"/portal/api/versions/{version_id}", headers={"Authorization": f"Bearer {secret}"}
    )
    assert answer.json()["error"]["code"] == "token_revoked"
    assert post(store, f"/console/tokens/{created.id}/revoke", csrf).status_code == 404


def test_revoking_your_own_session_signs_you_out(store: ConsoleStore) -> None:
    csrf = store.sign_in("staff")
    db = db_of(store)
    mine = [t for t in Tokens(db).all(purpose="console_session")]
    assert len(mine) == 1
    answer = post(store, f"/console/tokens/{mine[0].id}/revoke", csrf)
    assert answer.status_code == 303 and answer.headers["location"] == "/console/login"
    assert store.client.get("/console/tokens", follow_redirects=False).status_code == 303


# -- accounts, schema and CLI -------------------------------------------------------------------------


def test_the_disabled_column_is_core_migration_v5(store: ConsoleStore) -> None:
    db = db_of(store)
    assert len(SCHEMAS["core"]) >= 5
    assert "disabled" in db.table("users").columns
    version = db.execute("SELECT version FROM schema_versions WHERE namespace = 'core'").fetchone()[0]
    assert version == len(SCHEMAS["core"])


def cli(store: ConsoleStore, *args: str) -> Any:
    where = ["--repo", str(store.repo), "--site", str(store.site), "--data", str(store.data)]
    result = CliRunner().invoke(depot, [*args[:2], *where, *args[2:]])
    return result


def test_cli_user_list_disable_enable(store: ConsoleStore) -> None:
    token = ci_token(store)
    listed = cli(store, "user", "list")
    assert listed.exit_code == 0, listed.output
    devices = ",".join(ACCOUNTS["maint"][1])
    assert re.search(rf"^maint\tno\tno\t{devices}\t", listed.output, re.M)
    assert re.search(r"^staff\tyes\tno\t-\t", listed.output, re.M)
    off = cli(store, "user", "disable", "dev")
    assert off.exit_code == 0 and "disabled" in off.output
    assert re.search(r"^dev\tno\tyes\t", cli(store, "user", "list").output, re.M)
    assert Tokens(db_of(store)).verify(token, "ci") is None
    assert cli(store, "user", "enable", "dev").exit_code == 0
    assert Tokens(db_of(store)).verify(token, "ci") is not None
    missing = cli(store, "user", "disable", "nobody")
    assert missing.exit_code != 0 and "no user 'nobody'" in missing.output


def test_cli_portal_show_and_short_ids(store: ConsoleStore) -> None:
    version_id = in_review(store)
    shown = cli(store, "portal", "show", version_id[:8])
    assert shown.exit_code == 0, shown.output
    assert f"id:\t{version_id}" in shown.output and "com.politedroid" in shown.output
    assert "android.permission.READ_CALENDAR" in shown.output and "min_sdk:\t3" in shown.output
    finding = re.search(r"^  ([0-9a-f]{32})\twarning\topen\t", shown.output, re.M)
    assert finding, shown.output
    resolved = cli(store, "portal", "resolve", finding[1][:6])
    assert resolved.exit_code == 0 and finding[1] in resolved.output
    assert cli(store, "portal", "approve", version_id[:6]).exit_code == 0
    assert status_of(store, version_id) == "approved"
    assert "\tapprove" in cli(store, "portal", "show", version_id).output
    for prefix, words in (("abc", "at least 4 characters"), ("ffffffff", "no version 'ffffffff'")):
        refused = cli(store, "portal", "show", prefix)
        assert refused.exit_code != 0 and words in refused.output


def test_the_release_form_offers_the_targets_depot_toml_lists(store: ConsoleStore) -> None:
    with (store.repo / "depot.toml").open("a", encoding="utf-8") as toml:  # into POLICY's [portal]
        toml.write('release_countries = ["FR", "IT"]\nrelease_vehicle_contexts = ["van"]\n')
    version_id = in_review(store)
    csrf = store.sign_in("staff")
    page = f"/console/review/{version_id}"
    assert post(store, f"{page}/approve", csrf).status_code == 303
    form = store.client.get(page).text
    for box in ('id="country-FR"', 'id="country-IT"', 'id="context-van"'):
        assert box in form
    released = post(store, f"{page}/release", csrf, country=["IT"], context=["van"])
    assert released.status_code == 303, released.text
    assert status_of(store, version_id) == "live"
