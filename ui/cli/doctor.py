"""`rag doctor`: checks an installation and says what to fix.

Each check is cheap (no model is loaded): folders and fingerprints, not forward passes.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from rag.settings import ConfigError, Settings

Status = Literal["ok", "warn", "fail"]


@dataclass(frozen=True)
class Check:
    """One finding: what was checked, how it went, and what to do when it did not go well."""

    name: str
    status: Status
    detail: str


def check_embedding(settings: Settings) -> list[Check]:
    from rag.embedding import choose_backend, embedding_model_id, resolve_embedding_folder
    from rag.index import recorded_model_id

    try:
        folder = resolve_embedding_folder(settings.embedding)
        recorded = recorded_model_id(settings.index)
        choice = choose_backend(settings.embedding, recorded)
    except ConfigError as exc:
        return [Check("embedding model", "fail", str(exc))]
    return [Check("embedding model", "ok", f"{embedding_model_id(settings.embedding, recorded)} in {folder}"),
            Check("embedding backend", "ok", f"{choice.backend}: {choice.reason}")]


def check_generator(settings: Settings) -> list[Check]:
    if settings.generator_backend == "http":
        import httpx

        from rag.generation import make_generator
        from rag.generation.http import HttpBackend

        try:
            make_generator(settings.generation)  # start-up's checks: the endpoint stays on-prem, the prompt format fits
            generator = HttpBackend(settings.generation)
        except ConfigError as exc:
            return [Check("generator", "fail", str(exc))]
        try:
            with generator.client(3) as client:  # with the token, and only to on-prem addresses
                response = client.get(f"{generator.url}/models")
            state: Status = "ok" if response.status_code == 200 else "warn"
            return [Check("generator", state, f"{generator.url} answered HTTP {response.status_code}")]
        except httpx.HTTPError as exc:
            return [Check("generator", "fail", f"{generator.url} cannot be reached ({exc}): start the server "
                                               f"or fix RAG_GENERATOR_URL")]
    from rag.generation import resolve_generator_model

    try:
        location = resolve_generator_model(settings.generation)
    except ConfigError as exc:
        return [Check("generator", "fail", str(exc))]
    where = location.folder / location.gguf_file if location.gguf_file else location.folder
    if not settings.generator_model:
        return [Check("generator", "warn", f"the embedded demo model ({location.name}) is small and often wrong: "
                                           "answers lead with quoted passages. For real answers set "
                                           "RAG_GENERATOR_MODEL to a local instruction model folder (e.g. "
                                           "dolly-v2-3b, see README) or RAG_GENERATOR_BACKEND=http with a vLLM "
                                           "server")]
    return [Check("generator", "ok", f"local model {where}")]


def check_gpu(settings: Settings) -> list[Check]:
    import torch

    from rag.index import faiss_gpu_count

    cuda, faiss_gpus = torch.cuda.is_available(), faiss_gpu_count()
    if settings.device == "cuda" and not cuda:
        return [Check("gpu", "fail", "RAG_DEVICE=cuda but torch sees no GPU: check nvidia-smi and the CUDA build "
                                     "of torch, or set RAG_DEVICE=auto")]
    if cuda:
        name = torch.cuda.get_device_name(0)
        return [Check("gpu", "ok", f"{torch.cuda.device_count()} GPU(s) ({name}); FAISS sees {faiss_gpus}")]
    return [Check("gpu", "ok", "no GPU: embedding, search and generation run on the CPU")]


def check_ocr(settings: Settings) -> list[Check]:
    """Whether scans and images can be read, by which engine, in which languages."""
    from ingest.ocr import choose_ocr

    try:
        choice = choose_ocr(settings.ocr)
    except ConfigError as exc:
        return [Check("ocr", "fail", str(exc))]
    if choice.engine == "none":
        state = "ok" if settings.ocr_engine == "none" else "warn"
        return [Check("ocr", state, f"{choice.reason}: scanned PDF pages and images are reported, not read")]
    if choice.engine == "tesseract":
        return [Check("ocr", "ok", f"Tesseract (tesserocr) reading {choice.languages}; languages installed in "
                                   f"{choice.tessdata_dir}: {', '.join(choice.available_languages)}")]
    return [Check("ocr", "ok", f"RapidOCR; {choice.reason}" if choice.reason else "RapidOCR (its bundled models)")]


def missing_index_advice(folder: Path) -> str:
    """What to do when `folder` holds no index: it holds documents (a common mix-up), or indexes are nearby."""
    from rag.index import find_indexes

    if folder.is_dir() and any(p.is_file() and not p.name.startswith(".") for p in folder.iterdir()):
        return (f"{folder} holds documents, not an index: index them with `rag ingest {folder} --index "
                f"data/index` and pass --index data/index (an index is a folder of its own)")
    found = [str(p) for p in find_indexes([Path.cwd(), folder.parent])]
    if found:
        return f"indexes found here: {', '.join(found)} (pass one with --index, or set RAG_INDEX_DIR)"
    return f"build one with `rag ingest FOLDER --index {folder}`"


def check_index(settings: Settings) -> list[Check]:
    from rag.embedding import embedding_model_id
    from rag.index import IndexNotFoundError, IndexReader

    reader = IndexReader(settings.index)
    try:
        reader.refresh()
    except IndexNotFoundError as exc:
        return [Check("index", "warn", f"{exc}: {missing_index_advice(exc.folder)}")]
    except Exception as exc:  # a broken manifest or FAISS file: reported, not raised
        return [Check("index", "fail", f"{settings.index_dir} cannot be read ({exc}): re-run `rag ingest`, or "
                                       f"move the folder away and index again")]
    assert reader.view is not None
    status = reader.view.status()
    out = []
    integrity = reader.view.integrity()
    if integrity != "ok":
        out.append(Check("index database", "fail", f"SQLite quick_check: {integrity}: restore a backup or re-index"))
    if status["vectors"] != status["chunks"]:
        out.append(Check("index", "fail", f"{status['vectors']} vectors but {status['chunks']} chunks in version "
                                          f"{status['version']}: run `rag ingest` again to rebuild the vectors"))
    try:
        configured = embedding_model_id(settings.embedding, str(status["embedding_model"]))
        if configured != status["embedding_model"]:
            out.append(Check("index model", "fail", f"index built with {status['embedding_model']}, configured "
                                                    f"{configured}: configure the same model (or "
                                                    f"RAG_EMBEDDING_BACKEND=auto), or run `rag ingest` to "
                                                    f"re-embed it in the configured backend's vectors"))
    except ConfigError:
        pass  # reported by the embedding check
    if not out:
        out.append(Check("index", "ok", f"version {status['version']}: {status['documents']} documents, "
                                        f"{status['chunks']} chunks, {status['index_type']} index"))
    return out + check_languages(settings, status["languages"])  # type: ignore[arg-type]


def check_languages(settings: Settings, indexed: dict[str, int]) -> list[Check]:
    """Which languages the embedding model covers (its model card's `language:` list; the packaged default is
    English-only), and a warning when the index holds others: there the keyword side carries the search."""
    from rag.analysis import LANGUAGES
    from rag.embedding import resolve_embedding_folder
    from rag.embedding.base import embedding_languages

    try:
        resolve_embedding_folder(settings.embedding)
    except ConfigError:
        return []  # reported by the embedding check
    covered = embedding_languages(settings.embedding)
    if covered == ("*",):
        return [Check("embedding languages", "ok", "the model card names no languages (or says multilingual): "
                                                   "taken to cover every one")]
    outside = {lang: n for lang, n in indexed.items() if lang and lang not in covered}
    named = ", ".join(sorted(covered)) if len(covered) <= 12 else f"{len(covered)} languages"
    if not outside:
        return [Check("embedding languages", "ok", f"the model covers {named}: every indexed language")]
    listed = ", ".join(f"{LANGUAGES.get(lang, lang)} ({n} chunks)" for lang, n in outside.items())
    return [Check("embedding languages", "warn", f"the model covers {named}, the index also holds {listed}: "
                                                 f"search there rests on keywords; for a multilingual model set "
                                                 f"RAG_EMBEDDING_MODEL to its folder (e.g. multilingual-e5-small, "
                                                 f"with RAG_EMBEDDING_QUERY_PREFIX='query: ' and "
                                                 f"RAG_EMBEDDING_PASSAGE_PREFIX='passage: ' if its folder "
                                                 f"gives no prompts) and re-run rag ingest")]


def check_private(path: Path) -> list[Check]:
    """A secret file (OIDC cookie secret, password hashes) readable by others is a warning with the fix."""
    try:
        mode = path.stat().st_mode
    except OSError:
        return []
    if mode & 0o077:
        return [Check("secrets", "warn", f"{path.resolve()} is readable by other users (mode {oct(mode & 0o777)}): "
                                         f"whoever reads it can forge sign-ins or guess passwords offline; "
                                         f"run `chmod 600 {path}`")]
    return []


def check_access(settings: Settings) -> list[Check]:
    out = []
    if settings.ui_users_file:
        from ui.auth import load_users

        try:
            users = load_users(settings.ui_users_file)
            admins = sum(u.user.is_admin for u in users.values())
            out.append(Check("users", "ok" if admins else "warn",
                             f"{len(users)} users, {admins} admin(s)" + ("" if admins else ": nobody can index")))
        except ConfigError as exc:
            out.append(Check("users", "fail", str(exc)))
    elif not settings.ui_oidc:
        out.append(Check("users", "ok", "single-user mode: the page binds to 127.0.0.1 only"))
    for root in settings.ui_allowed_roots:
        if not root.is_dir():
            out.append(Check("allowed folder", "fail", f"{root} (RAG_UI_ALLOWED_ROOTS) is not a folder"))
    for root in settings.acl_roots:
        if not Path(root).is_dir():
            out.append(Check("permissions", "warn", f"{root} (RAG_ACL_ROOTS) is not a folder"))
    secrets = [Path(".streamlit/secrets.toml"), Path.home() / ".streamlit" / "secrets.toml"]
    if settings.ui_users_file:
        secrets.append(settings.ui_users_file)
    for path in secrets:
        out.extend(check_private(path))
    config = Path(".streamlit/config.toml")
    if config.is_file() and tomllib.loads(config.read_text()).get("browser", {}).get("gatherUsageStats") is not False:
        out.append(Check("streamlit", "fail", f"{config.resolve()}: set [browser] gatherUsageStats = false"))
    return out


def check_sources(settings: Settings) -> list[Check]:
    """The sites and mailboxes of RAG_SOURCES_FILE, and the secrets file their credentials come from, as
    `rag ingest` will read them (no request is made)."""
    if settings.sources_file is None:
        return []
    from ingest.mail import MailSource, load_mailboxes
    from ingest.web import WebSource, load_sites

    ingest = settings.ingest
    try:
        sites, boxes = load_sites(ingest), load_mailboxes(ingest)
        for site in sites:
            WebSource.configured(site.url, sites, ingest)  # its secret found, the secrets file private
        for box in boxes:
            MailSource.configured(box.url, boxes, ingest)
    except ValueError as exc:
        return [Check("sources", "fail", str(exc))]
    open_to_admins = [s.url for s in sites if not s.groups and not s.groups_by_prefix] + \
        [b.url for b in boxes if not b.groups and not (b.use_acl and b.url.startswith("imap"))]
    detail = f"{len(sites)} site(s), {len(boxes)} mailbox(es) in {settings.sources_file}"
    if open_to_admins:
        return [Check("sources", "warn", f"{detail}; no readers configured for {', '.join(open_to_admins)}: "
                                         "their documents are shown to admins only")]
    return [Check("sources", "ok", detail)]


def check_app_db(settings: Settings) -> list[Check]:
    """The app database: a SQLite file's folder, or a PostgreSQL server that answers, at this release's schema,
    with the password from where it should come."""
    audit = settings.audit
    if not audit.shared:
        return [Check("app database", "ok", f"SQLite file {audit.app_db} (this host only: replicas on other hosts "
                                            "need RAG_APP_DB=postgresql://...)")]
    from ui.appdb import SCHEMA_VERSION, AppDB, AppDBError

    try:
        db = AppDB(audit.app_db, audit.retention_days, password_file=audit.password_file, pool_size=1)
    except (AppDBError, ValueError) as exc:
        return [Check("app database", "fail", str(exc))]
    try:
        version = db.schema_version()
    finally:
        db.close()
    where = "RAG_APP_DB_PASSWORD_FILE" if audit.password_file else "libpq (PGPASSWORD, PGPASSFILE or none)"
    return [Check("app database", "ok", f"PostgreSQL {db} at schema {version}/{SCHEMA_VERSION}, password from {where}; "
                                        "the index's writer lock is its advisory lock")]


def run_checks(settings: Settings) -> list[Check]:
    """Every check, in the order a person would fix them."""
    out: list[Check] = [Check("configuration", "ok", f"index {settings.index_dir}, device {settings.device}")]
    for check in (check_embedding, check_generator, check_gpu, check_ocr, check_index, check_app_db, check_access,
                  check_sources):
        out.extend(check(settings))
    return out
