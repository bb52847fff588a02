"""The web source (ingest/web.py) against a real HTTP server on loopback: a generated intranet site with a
sitemap, robots.txt, conditional GETs, a login-protected area, redirects in and out of scope and a linked PDF.

The attacker here is a hostile page or a site turned hostile (links and redirects out of scope, a name that
resolves to the cloud metadata address, a response too large), and a staff member reading the secrets file.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest

from ingest.job import run_ingest
from ingest.secrets import load_secrets
from ingest.web import WebSource, forbidden_address, normalize
from rag.index import IndexReader
from rag.search import Searcher
from rag.types import Principal
from tests.docgen import write_pdf
from tests.sitegen import Page, Site, html, serve

TOKEN = "s3cret-intranet-token"


def intranet(tmp_path: Path) -> Site:
    pdf = write_pdf(tmp_path / "guide.pdf", ["Expense claims are reimbursed within twelve working days of approval."],
                    title="Expense guide")
    pages = {
        "/wiki/": Page(html("Intranet wiki", "Welcome to the staff wiki.", [
            "/wiki/vpn", "old-name", "files/guide.pdf", "/wiki/private/salaries", "/blog/launch", "/wiki/broken",
            "/wiki/elsewhere", "/wiki/drafts/plan", "mailto:it@example.org", "/wiki/vpn#setup"])),
        "/wiki/vpn": Page(html("VPN", "The VPN gateway for remote staff is gate7.corp.example; use the "
                               "FortiClient profile named Northwind.", ["/wiki/"])),
        "/wiki/old-name": Page(b"", status=301, location="/wiki/new-name"),
        "/wiki/new-name": Page(html("Parking", "Visitor parking is on level minus two, bays 40 to 55.")),
        "/wiki/orphan": Page(html("Fire drill", "The fire assembly point is the car park by the north gate.")),
        "/wiki/files/guide.pdf": Page(pdf.read_bytes(), content_type="application/pdf"),
        "/wiki/private/salaries": Page(html("Salary bands", "Band C starts at 61,000 euros a year.")),
        "/wiki/drafts/plan": Page(html("Draft", "A draft the robots rules keep out.")),
        "/blog/launch": Page(html("Blog", "Out of scope.")),
    }
    site = Site(pages=pages, protected=("/wiki/private/",), token=TOKEN)
    return site


def configure(site: Site, tmp_path: Path, make_settings, *, secret: bool = True, extra: str = ""):  # type: ignore[no-untyped-def]
    sources = tmp_path / "sources.toml"
    sources.write_text(f'''[[site]]
url = "{site.url('/wiki/')}"
groups = ["staff"]
requests_per_s = 0
{'secret = "intranet"' if secret else ''}
{extra}
[site.groups_by_prefix]
"/wiki/private/" = ["hr"]
''')
    secrets = tmp_path / "secrets.toml"
    secrets.write_text(f'[intranet]\nheader = "Authorization: Bearer {TOKEN}"\n')
    secrets.chmod(0o600)
    return make_settings(sources_file=sources, secrets_file=secrets)


def add_robots_and_sitemap(site: Site) -> None:
    site.pages["/robots.txt"] = Page(f"User-agent: *\nDisallow: /wiki/drafts/\nSitemap: {site.url('/sitemap.xml')}\n"
                                     .encode(), content_type="text/plain")
    site.pages["/sitemap.xml"] = Page(f'''<?xml version="1.0" encoding="UTF-8"?>
<urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">
<url><loc>{site.url('/wiki/orphan')}</loc></url><url><loc>{site.url('/blog/elsewhere')}</loc></url>
</urlset>'''.encode(), content_type="application/xml")


def documents(settings) -> dict[str, tuple[str, ...]]:  # type: ignore[no-untyped-def]
    reader = IndexReader(settings.index)
    reader.refresh()
    assert reader.view is not None
    live = reader.view.live_documents()
    return {os.fsdecode(k): d.groups for k, d in live.items()}


def test_a_site_is_crawled_in_scope_with_its_readers_and_recrawled_with_conditional_requests(
        make_settings, embedder, tmp_path: Path) -> None:
    site = intranet(tmp_path)
    outside = Site(pages={"/x": Page(html("Elsewhere", "Another host."))})
    with serve(site), serve(outside):
        site.pages["/wiki/elsewhere"] = Page(b"", status=302, location=outside.url("/x"))
        add_robots_and_sitemap(site)
        settings = configure(site, tmp_path, make_settings)
        summary = run_ingest(settings, [site.url("/wiki/")], embedder=embedder, progress=False)

        u = site.url
        assert documents(settings) == {
            u("/wiki/"): ("staff",), u("/wiki/vpn"): ("staff",), u("/wiki/new-name"): ("staff",),
            u("/wiki/orphan"): ("staff",), u("/wiki/files/guide.pdf"): ("staff",),
            u("/wiki/private/salaries"): ("hr",)}
        assert summary.files_failed == [] and summary.files_indexed == 6
        asked = {r.path for r in site.requests()}
        assert "/blog/launch" not in asked and "/blog/elsewhere" not in asked  # out of scope
        assert "/wiki/drafts/plan" not in asked  # robots.txt
        assert outside.requests() == []  # a redirect out of scope is not followed
        assert all(r.authorized for r in site.requests())  # the credentials, to the site's own host only
        assert len([r for r in site.requests() if r.path == "/wiki/vpn"]) == 1  # the #fragment is the same page

        searcher = Searcher(embedder, IndexReader(settings.index), settings.search)
        staff = Principal(frozenset({"staff"}))
        assert searcher.search("what is the vpn gateway address", k=1, principal=staff).hits[0].path == u("/wiki/vpn")
        assert searcher.search("how long until expenses are paid back", k=1, principal=staff).hits[0].path == \
            u("/wiki/files/guide.pdf")
        assert all(h.path != u("/wiki/private/salaries")
                   for h in searcher.search("salary band C", k=10, principal=staff).hits)

        # nothing changed: only conditional requests, each a 304; nothing parsed or embedded
        site.clear_log()
        again = run_ingest(settings, [site.url("/wiki/")], embedder=embedder, progress=False)
        pages = [r for r in site.requests() if r.path not in ("/robots.txt", "/sitemap.xml")]
        assert pages and all(r.conditional and r.status == 304 for r in pages if r.path != "/wiki/old-name"
                             and r.path != "/wiki/elsewhere" and r.path != "/wiki/broken")
        assert again.files_indexed == 0 and again.chunks_embedded == 0 and again.files_unchanged == 6

        # an edited page, a page gone (404), a page no longer linked, a server error
        site.pages["/wiki/vpn"] = Page(html("VPN", "The VPN gateway moved to gate9.corp.example in December.",
                                            ["/wiki/"]), modified=1_790_000_000.0)
        del site.pages["/wiki/orphan"]
        site.pages["/wiki/"] = Page(html("Intranet wiki", "Welcome to the staff wiki.", [
            "/wiki/vpn", "files/guide.pdf", "/wiki/private/salaries", "/wiki/orphan"]))
        site.pages["/wiki/files/guide.pdf"] = Page(b"", status=503)
        third = run_ingest(settings, [site.url("/wiki/")], embedder=embedder, progress=False)
        assert set(documents(settings)) == {u("/wiki/"), u("/wiki/vpn"), u("/wiki/files/guide.pdf"),
                                            u("/wiki/private/salaries")}  # the PDF kept through the 503
        assert third.files_indexed == 2  # the start page and the VPN page
        assert [f.path for f in third.files_failed] == [u("/wiki/files/guide.pdf")]
        assert "503" in third.files_failed[0].error
        assert third.files_removed == 2  # the 404 and the page no longer linked
        searcher = Searcher(embedder, IndexReader(settings.index), settings.search)
        assert "gate9" in searcher.search("vpn gateway", k=1, principal=staff).hits[0].text

        from rag.index import IndexReader as Reader
        reader = Reader(settings.index)
        reader.refresh()
        [record] = reader.view.sources()  # type: ignore[union-attr]
        assert (record.kind, record.name, record.items, record.failed) == ("web", u("/wiki/"), 4, 1)


def test_without_credentials_the_protected_area_is_refused_and_said(make_settings, embedder, tmp_path: Path) -> None:
    site = intranet(tmp_path)
    with serve(site):
        settings = configure(site, tmp_path, make_settings, secret=False)
        summary = run_ingest(settings, [site.url("/wiki/")], embedder=embedder, progress=False)
        assert site.url("/wiki/private/salaries") not in documents(settings)
        [failed] = [f for f in summary.files_failed if "private" in f.path]
        assert "401" in failed.error and "secret" in failed.error
        assert not any(r.authorized for r in site.requests())


def test_a_page_limit_removes_nothing_it_did_not_reach(make_settings, embedder, tmp_path: Path) -> None:
    site = intranet(tmp_path)
    with serve(site):
        settings = configure(site, tmp_path, make_settings)
        run_ingest(settings, [site.url("/wiki/")], embedder=embedder, progress=False)
        before = set(documents(settings))
        limited = configure(site, tmp_path, make_settings, extra="max_pages = 2")
        summary = run_ingest(limited, [site.url("/wiki/")], embedder=embedder, progress=False)
        assert set(documents(limited)) == before and summary.files_removed == 0
        assert any("max_pages=2" in f.error for f in summary.files_failed)


def test_a_secrets_file_others_may_read_is_refused(make_settings, tmp_path: Path) -> None:
    secrets = tmp_path / "secrets.toml"
    secrets.write_text('[intranet]\nheader = "Authorization: Bearer x"\n')
    secrets.chmod(0o644)
    with pytest.raises(ValueError, match="chmod 600"):
        load_secrets(secrets)
    secrets.chmod(0o600)
    [entry] = load_secrets(secrets).values()
    assert "Bearer" not in repr(entry) and entry.headers() == {"Authorization": "Bearer x"}
    link = tmp_path / "link.toml"
    link.symlink_to(secrets)
    with pytest.raises(ValueError, match="link"):
        load_secrets(link)


def test_metadata_and_link_local_addresses_are_never_connected_to(make_settings, embedder, tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    for address in ("169.254.169.254", "::ffff:169.254.169.254", "fd00:ec2::254", "fe80::1", "0.0.0.0"):
        assert forbidden_address(address), address
    assert not forbidden_address("127.0.0.1") and not forbidden_address("10.1.2.3")
    # a name that resolves to the metadata address (as DNS rebinding would make it, after any earlier check)
    real = socket.getaddrinfo

    def resolve(host, *args, **kwargs):  # type: ignore[no-untyped-def]
        if host == "intranet.test":
            return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("169.254.169.254", 80))]
        return real(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", resolve)
    settings = make_settings()
    summary = run_ingest(settings, ["http://intranet.test/wiki/"], embedder=embedder, progress=False)
    assert summary.files_indexed == 0
    assert any("metadata" in f.error for f in summary.files_failed), summary.files_failed


def test_responses_are_bounded_in_size(make_settings, embedder, tmp_path: Path) -> None:
    site = Site(pages={"/wiki/": Page(html("Start", "Small page.", ["/wiki/huge"])),
                       "/wiki/huge": Page(html("Huge", "word " * 400_000))})
    with serve(site):
        settings = make_settings(max_file_mb=1)
        summary = run_ingest(settings, [site.url("/wiki/")], embedder=embedder, progress=False)
        assert [f.path for f in summary.files_failed] == [site.url("/wiki/huge")]
        assert "1 MiB limit" in summary.files_failed[0].error


def test_addresses_are_normalized() -> None:
    assert normalize("HTTP://Intranet.Example:80/wiki#top") == "http://intranet.example/wiki"
    assert normalize("https://h:8443") == "https://h:8443/"
    assert normalize("javascript:alert(1)") is None and normalize("http://user:pw@h/") is None
    assert normalize("ftp://h/x") is None


def test_spooled_pages_are_removed_after_the_run(make_settings, embedder, tmp_path: Path) -> None:
    site = intranet(tmp_path)
    with serve(site):
        settings = configure(site, tmp_path, make_settings)
        source = WebSource.configured(site.url("/wiki/"), [], settings.ingest)
        items = list(source.scan({}))
        spool = Path(next(i.root for i in items if getattr(i, "spool", "")))
        assert spool.is_dir() and (spool.stat().st_mode & 0o077) == 0
        source.close()
        assert not spool.exists()


def test_an_admins_removal_of_a_page_sticks_through_the_next_crawl(make_settings, embedder, tmp_path: Path) -> None:
    from ingest.job import remove_paths, restore_paths

    site = intranet(tmp_path)
    with serve(site):
        settings = configure(site, tmp_path, make_settings)
        run_ingest(settings, [site.url("/wiki/")], embedder=embedder, progress=False)
        removed = remove_paths(settings.index, [site.url("/wiki/vpn")], embedder.model_id, by="admin")
        assert removed.documents_removed == 1
        again = run_ingest(settings, [site.url("/wiki/")], embedder=embedder, progress=False)
        assert site.url("/wiki/vpn") not in documents(settings) and again.files_excluded == 1
        assert site.url("/wiki/new-name") in documents(settings)  # its neighbours stay
        restore_paths(settings.index, [site.url("/wiki/vpn")], embedder.model_id)
        run_ingest(settings, [site.url("/wiki/")], embedder=embedder, progress=False)
        assert site.url("/wiki/vpn") in documents(settings)


def test_doctor_checks_the_sources_file_and_its_secrets(make_settings, tmp_path: Path) -> None:
    from ui.cli.doctor import check_sources

    sources = tmp_path / "sources.toml"
    sources.write_text('[[site]]\nurl = "https://intranet.example/wiki/"\nsecret = "intranet"\n')
    secrets = tmp_path / "secrets.toml"
    secrets.write_text('[intranet]\ncookie = "session=abc"\n')
    secrets.chmod(0o640)
    [check] = check_sources(make_settings(sources_file=sources, secrets_file=secrets))
    assert check.status == "fail" and "chmod 600" in check.detail
    secrets.chmod(0o600)
    [check] = check_sources(make_settings(sources_file=sources, secrets_file=secrets))
    assert check.status == "warn" and "admins only" in check.detail  # no readers configured


def test_tls_is_verified_with_the_sites_internal_ca(make_settings, embedder, tmp_path: Path) -> None:
    from tests.conftest import require_tool
    from tests.sitegen import self_signed

    require_tool("openssl", "openssl")
    cert, key = self_signed(tmp_path)
    site = Site(pages={"/wiki/": Page(html("Start", "The canteen opens at half past eleven."))}, tls=(cert, key))
    with serve(site):
        sources = tmp_path / "sources.toml"
        sources.write_text(f'[[site]]\nurl = "{site.url("/wiki/")}"\nrequests_per_s = 0\n')
        untrusted = run_ingest(make_settings(sources_file=sources), [site.url("/wiki/")], embedder=embedder,
                               progress=False)
        assert untrusted.files_indexed == 0 and "CERTIFICATE_VERIFY_FAILED" in untrusted.files_failed[0].error
        sources.write_text(f'[[site]]\nurl = "{site.url("/wiki/")}"\nrequests_per_s = 0\nca_bundle = "{cert}"\n')
        trusted = run_ingest(make_settings(sources_file=sources), [site.url("/wiki/")], embedder=embedder,
                             progress=False)
        assert trusted.files_indexed == 1 and trusted.files_failed == []


def test_a_pages_address_is_never_opened_as_a_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from rag.store import DocumentInfo
    from ui.sources import SourceChangedError, SourceViewer, read_indexed_file

    # a relative path spelled like the address exists in the working folder: it must not be what is served
    monkeypatch.chdir(tmp_path)
    (tmp_path / "http:" / "intranet.example").mkdir(parents=True)
    (tmp_path / "http:" / "intranet.example" / "wiki").write_text("not the page")
    with pytest.raises(SourceChangedError, match="web page"):
        read_indexed_file(Path("http://intranet.example/wiki"), "0" * 64, 1 << 20)
    page = DocumentInfo("http://intranet.example/wiki", "Wiki", 1, 10, 0.0, 1, 1, "0" * 64)
    assert "web page" in SourceViewer.file_changed(page)
