"""MatcherSettings: the common settings plus the matcher's own, read from `MATCHER_*`."""

from __future__ import annotations

from pathlib import Path

from pydantic import AliasChoices, Field
from pydantic_settings import SettingsConfigDict

from services.matcher.embedder import Backend
from shared.settings import CommonSettings


class MatcherSettings(CommonSettings):
    model_config = SettingsConfigDict(env_prefix="MATCHER_", extra="ignore", populate_by_name=True)

    host: str = "127.0.0.1"
    port: int = 8002
    # None: Qdrant Edge in-process under data_dir/"index"; a URL: a Qdrant server.
    qdrant_url: str | None = Field(default=None, validation_alias=AliasChoices("QDRANT_URL"))
    collection: str = "contributions"
    batch_size: int = Field(default=64, ge=1, le=10_000)
    # Large, so that its texts are embedded in calls of similar length (little padding); a live
    # question waits only for the embedding call or write in hand (consumer.py), not for the batch.
    # Sorted by tokens in batches of 1,024, the se-quantumcomputing posts pad to 1.6% more tokens
    # than their own, against 6.2% in batches of 256 (9% against 2% of attention's work).
    backfill_batch_size: int = Field(default=1024, ge=1, le=10_000)
    # What a live question may wait for during an import: one call of this many texts. int8 encodes
    # as fast in batches of 16 as of 32 (1,024 se-quantumcomputing posts: 59.7 and 57.1 posts/s,
    # 31.5 and 31.8 s of CPU), so the wait halves for nothing.
    embed_batch_size: int = Field(default=16, ge=1, le=1024)
    # The runtime of the embedding model: "onnx-int8" (int8 weights: ~1.8x torch's rate, the same
    # ranking quality on the four evaluation sites), "onnx" (float32) or "torch".
    embedder: Backend = "onnx-int8"
    # Tokens read per text; None: the model's own 256. Another length gives other vectors.
    embed_max_seq_length: int | None = Field(default=None, ge=8, le=512)
    # Where the ONNX backends export the model when the installation has no built file of it
    # (`expertmatch build-model`); None: data_dir/"models".
    model_dir: Path | None = None
    candidates: int = Field(default=10, ge=1, le=200)
    search_depth: int = Field(default=300, ge=1, le=5_000)
    lexical_depth: int = Field(default=300, ge=0, le=5_000)
    tag_depth: int = Field(default=100, ge=0, le=5_000)
    recent_depth: int = Field(default=300, ge=0, le=5_000)
    evidence: int = Field(default=3, ge=1, le=20)
    recency_half_life_days: float = Field(default=365.0, gt=0)
    # Learning to rank per tenant, from its past questions with an accepted answer.
    learn_min_examples: int = Field(default=50, ge=1)
    learn_every: int = Field(default=50, ge=1)
    learn_window: int = Field(default=600, ge=1)
    learn_history: int = Field(default=20_000, ge=1)
    consume: bool = True

    @property
    def edge_path(self):
        return self.data_dir / "index"

    @property
    def model_path(self) -> Path:
        return self.model_dir or self.data_dir / "models"
