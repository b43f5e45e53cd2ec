"""One settings object for the whole system: environment variables `HIPPOGRAPH_*` and a `.env` file."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from hippograph.stores.recall_config import RecallConfig


class Settings(BaseSettings):
    """hippograph's configuration. Every field can be set as `HIPPOGRAPH_<FIELD>` (e.g. `HIPPOGRAPH_DATA_DIR`)."""

    model_config = SettingsConfigDict(
        env_prefix="HIPPOGRAPH_", env_file=".env", extra="ignore", use_attribute_docstrings=True
    )

    data_dir: Path = Path(".hippograph")
    """Where the embedded stores keep their files."""
    tree_backend: Literal["embedded", "neo4j"] = "embedded"
    """Tree memory backend: `embedded` (SQLite + numpy, no server) or `neo4j`."""
    neo4j_uri: str = "bolt://127.0.0.1:7687"
    neo4j_user: str = "neo4j"
    neo4j_password: str = "neo4j"
    neo4j_database: str = "neo4j"
    neo4j_vector_cache_rows: int = Field(default=100_000, ge=0)
    """Neo4j backend: most memory vectors one process keeps in memory to rank a cube's memories itself (exact
    cosine; float32, 4 x dimension bytes each: ~150 MB for 100k 384-d vectors, plus their ids). A cube bigger
    than this is searched through Neo4j's vector index (HNSW); 0 turns the copy off."""
    milvus_uri: str = ""
    """Preference memory: a Milvus server URI, or empty for a Milvus Lite file in the data dir."""
    milvus_token: str = ""
    registry_url: str = ""
    """Users, cubes, sharing, API keys: any SQLAlchemy URL; empty = SQLite in the data dir."""
    checkpointer_url: str = ""
    """LangGraph checkpoints: empty = SQLite in the data dir; `postgresql://...` = Postgres saver."""
    outbox_url: str = ""
    """Enrichment jobs: empty = SQLite in the data dir; `redis://host:port/db` = Redis Streams."""
    embedder: str = "minilm"
    """`minilm` (local ONNX all-MiniLM-L6-v2), `hashing[:dim]` (tests only) or an `init_embeddings` string."""
    chat_model: str = ""
    """An `init_chat_model` string such as `openai:gpt-4o-mini` or `ollama:llama3.2`; empty = no model."""
    default_user: str = "default"
    auto_create_users: bool = True
    """Create a user (with a default cube) on first use. Servers turn this off: unknown users get 404."""
    recall: RecallConfig = Field(default_factory=RecallConfig)
    """Recall tuning (pools, fusion, propagation, graph expansion, MMR): `nodes/recall_config.py`. Env as JSON:
    `HIPPOGRAPH_RECALL='{"rrf_k": 10}'`."""
    turn_key: Literal["none", "speaker_date", "full"] = "full"
    """What a conversation turn's key carries (`nodes/turns.py`): speaker and time, and (`full`) the turn it
    replies to. Applies to turns written from then on."""
    key_keyphrases: int = Field(default=0, ge=0, le=10)
    """Keyphrases (yake, offline) the enrichment worker appends to each memory's index key; 0 = off, the default:
    the top 3 measured R@10 -0.003 on LoCoMo dev (evals/results/recall.md)."""
    top_k: int = Field(default=10, ge=1, le=200)
    threshold: float = Field(default=0.0, ge=0.0, le=1.0)
    """Relevance floor (0-1, relative to the best hit) under which the threshold node drops a memory."""
    min_keep: int = Field(default=3, ge=0)
    """The threshold node always keeps at least this many memories."""
    mode: Literal["fast", "fine"] = "fast"
    """`fast`: rules only on the chat path; `fine`: LLM extraction in enrichment when a model is set."""
    enrich_node_delay: float = Field(default=0.0, ge=0.0, le=60.0)
    """Seconds every enrichment node waits before it runs: only for crash tests that kill a worker mid-job."""
    worker_in_process: bool = True
    """Run the enrichment worker as a thread inside the process (the embedded default)."""
    job_max_attempts: int = Field(default=5, ge=1)
    """Attempts per enrichment job before it is marked failed (`hippograph jobs retry` requeues it)."""
    job_retry_base_seconds: float = Field(default=2.0, ge=0.0)
    """Back-off before the 2nd attempt; doubles per attempt (with jitter), capped by `job_retry_max_seconds`."""
    job_retry_max_seconds: float = Field(default=300.0, ge=0.0)
    max_request_bytes: int = 2_000_000
    chunker: Literal["recursive", "sentence", "langchain"] = "recursive"
    """Document chunking: chonkie `recursive` or `sentence` (no model download), or `langchain`
    (MarkdownHeaderTextSplitter + RecursiveCharacterTextSplitter). Sections always follow Markdown headings."""
    chunk_tokens: int = Field(default=200, ge=16, le=4096)
    """Target chunk size in tokens of `chunk_tokenizer`."""
    chunk_overlap: int = Field(default=20, ge=0)
    """Token overlap between consecutive chunks (sentence and langchain chunkers; chonkie recursive has none)."""
    chunk_tokenizer: str = "minilm"
    """Tokenizer for chunk sizes, all offline: `minilm` (the embedder's tokenizer.json), `word` or `character`."""
    ingest_max_bytes: int = Field(default=100_000_000, ge=1)
    """Files larger than this are reported and skipped by document ingestion."""
    ingest_batch: int = Field(default=64, ge=1, le=4096)
    """Chunks a document ingest embeds and writes per step: a big file streams through in steps of this size
    (flat memory, per-chunk progress, and an interrupted ingest resumes where it stopped)."""
    admin_key: str = ""
    """The HTTP server's admin API key (user management); empty = only users flagged `is_admin` may manage users."""
    api_key: str = ""
    """The caller's API key for the stdio MCP server (`HIPPOGRAPH_API_KEY`); empty = act as `default_user`."""

    @property
    def tree_path(self) -> Path:
        return self.data_dir / "tree.sqlite"

    @property
    def milvus_path(self) -> str:
        return self.milvus_uri or str(self.data_dir / "preferences.db")

    @property
    def registry_path(self) -> str:
        return self.registry_url or f"sqlite:///{self.data_dir / 'registry.sqlite'}"

    @property
    def checkpoint_path(self) -> str:
        return self.checkpointer_url or str(self.data_dir / "checkpoints.sqlite")

    @property
    def outbox_path(self) -> str:
        return self.outbox_url or str(self.data_dir / "outbox.sqlite")


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
