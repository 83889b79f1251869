"""The API's types, generated from manimd's OpenAPI document by
clients/python/generate_types.py: do not edit by hand."""

from __future__ import annotations

from dataclasses import dataclass, field as _field
from typing import Any, Literal, Union


def _opt(v: Any, f: Any) -> Any:
    return None if v is None else f(v)


Encoding = Literal["preview", "final"]
"""How hard the encoder works: `final` keeps x264's default quality preset;
`preview` uses its fastest preset (bigger files, same visual target).
"""

Engine = Literal["manim", "manimgl"]
"""The Manim engine a scene is written for."""

Format = Literal["mp4", "webm", "gif", "mov", "png"]
"""The delivered file's format."""

JobStatus = Literal["queued", "running", "succeeded", "failed", "canceled"]

Parallel = Union[Literal["auto"], int]
"""`auto` (default): split a long render over the free workers; a number: at most that many chunks (`1`: never split)"""

PreviewMode = Literal["storyboard", "still"]
"""What a preview draws."""

Quality = Literal["low", "medium", "high", "production", "4k"]
"""Resolution and frame-rate presets, named as Manim names them."""

Stage = Literal["planning", "writing", "checking", "rendering", "repairing"]
"""A step of the pipeline, as the event stream shows it."""

WebhookState = Literal["pending", "delivered", "failed"]
"""See `WebhookView::state`."""


@dataclass(frozen=True)
class AnimationInfo:
    """One animation of a render, as the result lists it."""
    index: int
    scene: str
    name: str
    start: float
    end: float
    cached: bool
    line: int | None = None

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> AnimationInfo:
        return cls(
            index=d['index'],
            scene=d['scene'],
            name=d['name'],
            start=float(d['start']),
            end=float(d['end']),
            cached=d['cached'],
            line=d.get('line'),
        )

    def to_json(self) -> dict[str, Any]:
        d: dict[str, Any] = {}
        if self.index is not None:
            d['index'] = self.index
        if self.scene is not None:
            d['scene'] = self.scene
        if self.name is not None:
            d['name'] = self.name
        if self.start is not None:
            d['start'] = self.start
        if self.end is not None:
            d['end'] = self.end
        if self.cached is not None:
            d['cached'] = self.cached
        if self.line is not None:
            d['line'] = self.line
        return d


@dataclass(frozen=True)
class Attempt:
    """One try at the code: what the model wrote, what it met, what it cost."""
    number: int
    code: str
    prompt_tokens: int
    completion_tokens: int
    error: dict[str, Any] | None = None
    failed_in: str | None = None
    render_secs: float | None = None
    tokens_estimated: bool | None = None

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Attempt:
        return cls(
            number=d['number'],
            code=d['code'],
            prompt_tokens=d['prompt_tokens'],
            completion_tokens=d['completion_tokens'],
            error=d.get('error'),
            failed_in=d.get('failed_in'),
            render_secs=_opt(d.get('render_secs'), lambda v: float(v)),
            tokens_estimated=d.get('tokens_estimated'),
        )

    def to_json(self) -> dict[str, Any]:
        d: dict[str, Any] = {}
        if self.number is not None:
            d['number'] = self.number
        if self.code is not None:
            d['code'] = self.code
        if self.prompt_tokens is not None:
            d['prompt_tokens'] = self.prompt_tokens
        if self.completion_tokens is not None:
            d['completion_tokens'] = self.completion_tokens
        if self.error is not None:
            d['error'] = self.error
        if self.failed_in is not None:
            d['failed_in'] = self.failed_in
        if self.render_secs is not None:
            d['render_secs'] = self.render_secs
        if self.tokens_estimated is not None:
            d['tokens_estimated'] = self.tokens_estimated
        return d


@dataclass(frozen=True)
class BlobView:
    """The answer of `PUT /v1/blobs/{digest}`."""
    digest: str
    created: bool

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> BlobView:
        return cls(
            digest=d['digest'],
            created=d['created'],
        )

    def to_json(self) -> dict[str, Any]:
        d: dict[str, Any] = {}
        if self.digest is not None:
            d['digest'] = self.digest
        if self.created is not None:
            d['created'] = self.created
        return d


@dataclass(frozen=True)
class Capabilities:
    """`GET /v1/capabilities`."""
    engines: list[EngineInfo]
    qualities: list[QualityInfo]
    formats: list[FormatInfo]
    limits: LimitsInfo
    tex: bool
    sandbox: SandboxInfo
    narration: NarrationInfo
    generation: bool
    plugins: list[PluginInfo] | None = None

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Capabilities:
        return cls(
            engines=[EngineInfo.from_json(x) for x in d['engines']],
            qualities=[QualityInfo.from_json(x) for x in d['qualities']],
            formats=[FormatInfo.from_json(x) for x in d['formats']],
            limits=LimitsInfo.from_json(d['limits']),
            tex=d['tex'],
            sandbox=SandboxInfo.from_json(d['sandbox']),
            narration=NarrationInfo.from_json(d['narration']),
            generation=d['generation'],
            plugins=_opt(d.get('plugins'), lambda v: [PluginInfo.from_json(x) for x in v]),
        )

    def to_json(self) -> dict[str, Any]:
        d: dict[str, Any] = {}
        if self.engines is not None:
            d['engines'] = [x.to_json() for x in self.engines]
        if self.qualities is not None:
            d['qualities'] = [x.to_json() for x in self.qualities]
        if self.formats is not None:
            d['formats'] = [x.to_json() for x in self.formats]
        if self.limits is not None:
            d['limits'] = self.limits.to_json()
        if self.tex is not None:
            d['tex'] = self.tex
        if self.sandbox is not None:
            d['sandbox'] = self.sandbox.to_json()
        if self.narration is not None:
            d['narration'] = self.narration.to_json()
        if self.generation is not None:
            d['generation'] = self.generation
        if self.plugins is not None:
            d['plugins'] = [x.to_json() for x in self.plugins]
        return d


@dataclass(frozen=True)
class ChunkInfo:
    """One chunk of a split render."""
    index: int
    first_animation: int
    last_animation: int
    seconds: float
    node: str
    render_secs: float

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> ChunkInfo:
        return cls(
            index=d['index'],
            first_animation=d['first_animation'],
            last_animation=d['last_animation'],
            seconds=float(d['seconds']),
            node=d['node'],
            render_secs=float(d['render_secs']),
        )

    def to_json(self) -> dict[str, Any]:
        d: dict[str, Any] = {}
        if self.index is not None:
            d['index'] = self.index
        if self.first_animation is not None:
            d['first_animation'] = self.first_animation
        if self.last_animation is not None:
            d['last_animation'] = self.last_animation
        if self.seconds is not None:
            d['seconds'] = self.seconds
        if self.node is not None:
            d['node'] = self.node
        if self.render_secs is not None:
            d['render_secs'] = self.render_secs
        return d


@dataclass(frozen=True)
class CodeGeneration:
    """`POST /v1/code/generations`: checked code, no render."""
    code: str
    engine: Engine
    storyboard: str
    attempts: list[Attempt]
    prompt_tokens: int
    completion_tokens: int

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> CodeGeneration:
        return cls(
            code=d['code'],
            engine=d['engine'],
            storyboard=d['storyboard'],
            attempts=[Attempt.from_json(x) for x in d['attempts']],
            prompt_tokens=d['prompt_tokens'],
            completion_tokens=d['completion_tokens'],
        )

    def to_json(self) -> dict[str, Any]:
        d: dict[str, Any] = {}
        if self.code is not None:
            d['code'] = self.code
        if self.engine is not None:
            d['engine'] = self.engine
        if self.storyboard is not None:
            d['storyboard'] = self.storyboard
        if self.attempts is not None:
            d['attempts'] = [x.to_json() for x in self.attempts]
        if self.prompt_tokens is not None:
            d['prompt_tokens'] = self.prompt_tokens
        if self.completion_tokens is not None:
            d['completion_tokens'] = self.completion_tokens
        return d


@dataclass(frozen=True)
class Cue:
    """One narration line in the delivered video, in seconds from its start."""
    start: float
    end: float
    text: str

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Cue:
        return cls(
            start=float(d['start']),
            end=float(d['end']),
            text=d['text'],
        )

    def to_json(self) -> dict[str, Any]:
        d: dict[str, Any] = {}
        if self.start is not None:
            d['start'] = self.start
        if self.end is not None:
            d['end'] = self.end
        if self.text is not None:
            d['text'] = self.text
        return d


@dataclass(frozen=True)
class EngineInfo:
    name: Engine
    version: str
    installed: bool
    import_: str

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> EngineInfo:
        return cls(
            name=d['name'],
            version=d['version'],
            installed=d['installed'],
            import_=d['import'],
        )

    def to_json(self) -> dict[str, Any]:
        d: dict[str, Any] = {}
        if self.name is not None:
            d['name'] = self.name
        if self.version is not None:
            d['version'] = self.version
        if self.installed is not None:
            d['installed'] = self.installed
        if self.import_ is not None:
            d['import'] = self.import_
        return d


@dataclass(frozen=True)
class ErrorBody:
    """The body of every error response."""
    error: ErrorDetail

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> ErrorBody:
        return cls(
            error=ErrorDetail.from_json(d['error']),
        )

    def to_json(self) -> dict[str, Any]:
        d: dict[str, Any] = {}
        if self.error is not None:
            d['error'] = self.error.to_json()
        return d


@dataclass(frozen=True)
class ErrorDetail:
    """Further fields of the error's kind (`scene`, `available`, `traceback`, ...)."""
    code: str
    message: str
    column: int | None = None
    field: str | None = None
    line: int | None = None
    extra: dict[str, Any] = _field(default_factory=dict)

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> ErrorDetail:
        return cls(
            code=d['code'],
            message=d['message'],
            column=d.get('column'),
            field=d.get('field'),
            line=d.get('line'),
            extra={k: v for k, v in d.items() if k not in ('code', 'column', 'field', 'line', 'message')},
        )

    def to_json(self) -> dict[str, Any]:
        d: dict[str, Any] = {}
        if self.code is not None:
            d['code'] = self.code
        if self.message is not None:
            d['message'] = self.message
        if self.column is not None:
            d['column'] = self.column
        if self.field is not None:
            d['field'] = self.field
        if self.line is not None:
            d['line'] = self.line
        d.update(self.extra)
        return d


@dataclass(frozen=True)
class FormatInfo:
    name: Format
    content_type: str

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> FormatInfo:
        return cls(
            name=d['name'],
            content_type=d['content_type'],
        )

    def to_json(self) -> dict[str, Any]:
        d: dict[str, Any] = {}
        if self.name is not None:
            d['name'] = self.name
        if self.content_type is not None:
            d['content_type'] = self.content_type
        return d


@dataclass(frozen=True)
class StageEvent:
    """The pipeline entered a stage."""
    stage: Stage
    attempt: int

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> StageEvent:
        return cls(
            stage=d['stage'],
            attempt=d['attempt'],
        )

    def to_json(self) -> dict[str, Any]:
        d: dict[str, Any] = {}
        if self.stage is not None:
            d['stage'] = self.stage
        if self.attempt is not None:
            d['attempt'] = self.attempt
        return d


@dataclass(frozen=True)
class DeltaEvent:
    """Code as it streams from the model."""
    attempt: int
    text: str

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> DeltaEvent:
        return cls(
            attempt=d['attempt'],
            text=d['text'],
        )

    def to_json(self) -> dict[str, Any]:
        d: dict[str, Any] = {}
        if self.attempt is not None:
            d['attempt'] = self.attempt
        if self.text is not None:
            d['text'] = self.text
        return d


GenEvent = Union[StageEvent, DeltaEvent, Attempt]
"""A step the event stream shows (SSE events `stage`, `delta`, `attempt`)."""


def genevent_from_json(d: dict[str, Any]) -> GenEvent:
    """Reads one GenEvent variant."""
    if all(k in d for k in ('stage', 'attempt')):
        return StageEvent.from_json(d)
    if all(k in d for k in ('attempt', 'text')):
        return DeltaEvent.from_json(d)
    if all(k in d for k in ('number', 'code', 'prompt_tokens', 'completion_tokens')):
        return Attempt.from_json(d)
    raise ValueError(f"not a GenEvent: {sorted(d)}")


@dataclass(frozen=True)
class Generation:
    """A generation job's record, stored next to the job."""
    prompt: str
    max_attempts: int
    narration: bool
    plan_prompt_tokens: int
    plan_completion_tokens: int
    attempts: list[Attempt]
    totals: Totals
    own_key: bool | None = None
    storyboard: str | None = None

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Generation:
        return cls(
            prompt=d['prompt'],
            max_attempts=d['max_attempts'],
            narration=d['narration'],
            plan_prompt_tokens=d['plan_prompt_tokens'],
            plan_completion_tokens=d['plan_completion_tokens'],
            attempts=[Attempt.from_json(x) for x in d['attempts']],
            totals=Totals.from_json(d['totals']),
            own_key=d.get('own_key'),
            storyboard=d.get('storyboard'),
        )

    def to_json(self) -> dict[str, Any]:
        d: dict[str, Any] = {}
        if self.prompt is not None:
            d['prompt'] = self.prompt
        if self.max_attempts is not None:
            d['max_attempts'] = self.max_attempts
        if self.narration is not None:
            d['narration'] = self.narration
        if self.plan_prompt_tokens is not None:
            d['plan_prompt_tokens'] = self.plan_prompt_tokens
        if self.plan_completion_tokens is not None:
            d['plan_completion_tokens'] = self.plan_completion_tokens
        if self.attempts is not None:
            d['attempts'] = [x.to_json() for x in self.attempts]
        if self.totals is not None:
            d['totals'] = self.totals.to_json()
        if self.own_key is not None:
            d['own_key'] = self.own_key
        if self.storyboard is not None:
            d['storyboard'] = self.storyboard
        return d


@dataclass(frozen=True)
class GenerationRequest:
    """`POST /v1/generations`: a scene made from a prompt, rendered like any job.
    (`Debug` is written out to leave the key out.)
    """
    prompt: str
    api_key: str | None = None
    engine: Engine | None = None
    format: Format | None = None
    max_attempts: int | None = None
    narration: bool | None = None
    quality: Quality | None = None

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> GenerationRequest:
        return cls(
            prompt=d['prompt'],
            api_key=d.get('api_key'),
            engine=d.get('engine'),
            format=d.get('format'),
            max_attempts=d.get('max_attempts'),
            narration=d.get('narration'),
            quality=d.get('quality'),
        )

    def to_json(self) -> dict[str, Any]:
        d: dict[str, Any] = {}
        if self.prompt is not None:
            d['prompt'] = self.prompt
        if self.api_key is not None:
            d['api_key'] = self.api_key
        if self.engine is not None:
            d['engine'] = self.engine
        if self.format is not None:
            d['format'] = self.format
        if self.max_attempts is not None:
            d['max_attempts'] = self.max_attempts
        if self.narration is not None:
            d['narration'] = self.narration
        if self.quality is not None:
            d['quality'] = self.quality
        return d


@dataclass(frozen=True)
class Health:
    """`GET /health`."""
    status: str
    service: str
    version: str
    uptime_secs: int
    memory: Memory
    workers: Workers
    queue: Queue
    storage: StorageInfo
    database: str

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Health:
        return cls(
            status=d['status'],
            service=d['service'],
            version=d['version'],
            uptime_secs=d['uptime_secs'],
            memory=Memory.from_json(d['memory']),
            workers=Workers.from_json(d['workers']),
            queue=Queue.from_json(d['queue']),
            storage=StorageInfo.from_json(d['storage']),
            database=d['database'],
        )

    def to_json(self) -> dict[str, Any]:
        d: dict[str, Any] = {}
        if self.status is not None:
            d['status'] = self.status
        if self.service is not None:
            d['service'] = self.service
        if self.version is not None:
            d['version'] = self.version
        if self.uptime_secs is not None:
            d['uptime_secs'] = self.uptime_secs
        if self.memory is not None:
            d['memory'] = self.memory.to_json()
        if self.workers is not None:
            d['workers'] = self.workers.to_json()
        if self.queue is not None:
            d['queue'] = self.queue.to_json()
        if self.storage is not None:
            d['storage'] = self.storage.to_json()
        if self.database is not None:
            d['database'] = self.database
        return d


@dataclass(frozen=True)
class JobList:
    """`GET /v1/renders`."""
    renders: list[JobView]
    next_cursor: str | None = None

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> JobList:
        return cls(
            renders=[JobView.from_json(x) for x in d['renders']],
            next_cursor=d.get('next_cursor'),
        )

    def to_json(self) -> dict[str, Any]:
        d: dict[str, Any] = {}
        if self.renders is not None:
            d['renders'] = [x.to_json() for x in self.renders]
        if self.next_cursor is not None:
            d['next_cursor'] = self.next_cursor
        return d


@dataclass(frozen=True)
class JobProgress:
    """Where a running job is."""
    frames: int
    animations_done: int
    animation: str | None = None
    animation_index: int | None = None
    scene: str | None = None
    scene_count: int | None = None
    scene_index: int | None = None

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> JobProgress:
        return cls(
            frames=d['frames'],
            animations_done=d['animations_done'],
            animation=d.get('animation'),
            animation_index=d.get('animation_index'),
            scene=d.get('scene'),
            scene_count=d.get('scene_count'),
            scene_index=d.get('scene_index'),
        )

    def to_json(self) -> dict[str, Any]:
        d: dict[str, Any] = {}
        if self.frames is not None:
            d['frames'] = self.frames
        if self.animations_done is not None:
            d['animations_done'] = self.animations_done
        if self.animation is not None:
            d['animation'] = self.animation
        if self.animation_index is not None:
            d['animation_index'] = self.animation_index
        if self.scene is not None:
            d['scene'] = self.scene
        if self.scene_count is not None:
            d['scene_count'] = self.scene_count
        if self.scene_index is not None:
            d['scene_index'] = self.scene_index
        return d


@dataclass(frozen=True)
class JobResult:
    """What a finished job delivered."""
    duration: float
    bytes: int
    content_type: str
    format: Format
    still: bool
    engine_version: str
    render_secs: float
    attempt: int
    has_thumbnail: bool
    animations: list[AnimationInfo] | None = None
    cache_hit: bool | None = None
    chunks: list[ChunkInfo] | None = None
    codec: str | None = None
    engine_secs: float | None = None
    fps: float | None = None
    frames: int | None = None
    height: int | None = None
    narration: NarrationResult | None = None
    notice: Notice | None = None
    peak_rss_bytes: int | None = None
    plan_secs: float | None = None
    prefix_secs: float | None = None
    seed: int | None = None
    split: Notice | None = None
    stitch_secs: float | None = None
    warm_start: bool | None = None
    width: int | None = None

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> JobResult:
        return cls(
            duration=float(d['duration']),
            bytes=d['bytes'],
            content_type=d['content_type'],
            format=d['format'],
            still=d['still'],
            engine_version=d['engine_version'],
            render_secs=float(d['render_secs']),
            attempt=d['attempt'],
            has_thumbnail=d['has_thumbnail'],
            animations=_opt(d.get('animations'), lambda v: [AnimationInfo.from_json(x) for x in v]),
            cache_hit=d.get('cache_hit'),
            chunks=_opt(d.get('chunks'), lambda v: [ChunkInfo.from_json(x) for x in v]),
            codec=d.get('codec'),
            engine_secs=_opt(d.get('engine_secs'), lambda v: float(v)),
            fps=_opt(d.get('fps'), lambda v: float(v)),
            frames=d.get('frames'),
            height=d.get('height'),
            narration=_opt(d.get('narration'), lambda v: NarrationResult.from_json(v)),
            notice=_opt(d.get('notice'), lambda v: Notice.from_json(v)),
            peak_rss_bytes=d.get('peak_rss_bytes'),
            plan_secs=_opt(d.get('plan_secs'), lambda v: float(v)),
            prefix_secs=_opt(d.get('prefix_secs'), lambda v: float(v)),
            seed=d.get('seed'),
            split=_opt(d.get('split'), lambda v: Notice.from_json(v)),
            stitch_secs=_opt(d.get('stitch_secs'), lambda v: float(v)),
            warm_start=d.get('warm_start'),
            width=d.get('width'),
        )

    def to_json(self) -> dict[str, Any]:
        d: dict[str, Any] = {}
        if self.duration is not None:
            d['duration'] = self.duration
        if self.bytes is not None:
            d['bytes'] = self.bytes
        if self.content_type is not None:
            d['content_type'] = self.content_type
        if self.format is not None:
            d['format'] = self.format
        if self.still is not None:
            d['still'] = self.still
        if self.engine_version is not None:
            d['engine_version'] = self.engine_version
        if self.render_secs is not None:
            d['render_secs'] = self.render_secs
        if self.attempt is not None:
            d['attempt'] = self.attempt
        if self.has_thumbnail is not None:
            d['has_thumbnail'] = self.has_thumbnail
        if self.animations is not None:
            d['animations'] = [x.to_json() for x in self.animations]
        if self.cache_hit is not None:
            d['cache_hit'] = self.cache_hit
        if self.chunks is not None:
            d['chunks'] = [x.to_json() for x in self.chunks]
        if self.codec is not None:
            d['codec'] = self.codec
        if self.engine_secs is not None:
            d['engine_secs'] = self.engine_secs
        if self.fps is not None:
            d['fps'] = self.fps
        if self.frames is not None:
            d['frames'] = self.frames
        if self.height is not None:
            d['height'] = self.height
        if self.narration is not None:
            d['narration'] = None if self.narration is None else self.narration.to_json()
        if self.notice is not None:
            d['notice'] = None if self.notice is None else self.notice.to_json()
        if self.peak_rss_bytes is not None:
            d['peak_rss_bytes'] = self.peak_rss_bytes
        if self.plan_secs is not None:
            d['plan_secs'] = self.plan_secs
        if self.prefix_secs is not None:
            d['prefix_secs'] = self.prefix_secs
        if self.seed is not None:
            d['seed'] = self.seed
        if self.split is not None:
            d['split'] = None if self.split is None else self.split.to_json()
        if self.stitch_secs is not None:
            d['stitch_secs'] = self.stitch_secs
        if self.warm_start is not None:
            d['warm_start'] = self.warm_start
        if self.width is not None:
            d['width'] = self.width
        return d


@dataclass(frozen=True)
class JobView:
    """A render job as the API shows it."""
    id: str
    status: JobStatus
    engine: Engine
    quality: Quality
    format: Format
    fps: int
    encoding: Encoding
    scenes: list[str]
    attempts: int
    created_at: str
    timings: Timings
    progress: JobProgress
    links: Links
    error: dict[str, Any] | None = None
    finished_at: str | None = None
    generation: Generation | None = None
    kind: str | None = None
    result: JobResult | None = None
    seed: int | None = None
    started_at: str | None = None
    webhook: WebhookView | None = None

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> JobView:
        return cls(
            id=d['id'],
            status=d['status'],
            engine=d['engine'],
            quality=d['quality'],
            format=d['format'],
            fps=d['fps'],
            encoding=d['encoding'],
            scenes=d['scenes'],
            attempts=d['attempts'],
            created_at=d['created_at'],
            timings=Timings.from_json(d['timings']),
            progress=JobProgress.from_json(d['progress']),
            links=Links.from_json(d['links']),
            error=d.get('error'),
            finished_at=d.get('finished_at'),
            generation=_opt(d.get('generation'), lambda v: Generation.from_json(v)),
            kind=d.get('kind'),
            result=_opt(d.get('result'), lambda v: JobResult.from_json(v)),
            seed=d.get('seed'),
            started_at=d.get('started_at'),
            webhook=_opt(d.get('webhook'), lambda v: WebhookView.from_json(v)),
        )

    def to_json(self) -> dict[str, Any]:
        d: dict[str, Any] = {}
        if self.id is not None:
            d['id'] = self.id
        if self.status is not None:
            d['status'] = self.status
        if self.engine is not None:
            d['engine'] = self.engine
        if self.quality is not None:
            d['quality'] = self.quality
        if self.format is not None:
            d['format'] = self.format
        if self.fps is not None:
            d['fps'] = self.fps
        if self.encoding is not None:
            d['encoding'] = self.encoding
        if self.scenes is not None:
            d['scenes'] = self.scenes
        if self.attempts is not None:
            d['attempts'] = self.attempts
        if self.created_at is not None:
            d['created_at'] = self.created_at
        if self.timings is not None:
            d['timings'] = self.timings.to_json()
        if self.progress is not None:
            d['progress'] = self.progress.to_json()
        if self.links is not None:
            d['links'] = self.links.to_json()
        if self.error is not None:
            d['error'] = self.error
        if self.finished_at is not None:
            d['finished_at'] = self.finished_at
        if self.generation is not None:
            d['generation'] = None if self.generation is None else self.generation.to_json()
        if self.kind is not None:
            d['kind'] = self.kind
        if self.result is not None:
            d['result'] = None if self.result is None else self.result.to_json()
        if self.seed is not None:
            d['seed'] = self.seed
        if self.started_at is not None:
            d['started_at'] = self.started_at
        if self.webhook is not None:
            d['webhook'] = None if self.webhook is None else self.webhook.to_json()
        return d


@dataclass(frozen=True)
class LegacyErrorBody:
    """The body of the replaced system's calls' errors (`/render`,
    `/generate`): the usual error, and `detail`, the one string its
    clients read.
    """
    error: ErrorDetail
    detail: str

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> LegacyErrorBody:
        return cls(
            error=ErrorDetail.from_json(d['error']),
            detail=d['detail'],
        )

    def to_json(self) -> dict[str, Any]:
        d: dict[str, Any] = {}
        if self.error is not None:
            d['error'] = self.error.to_json()
        if self.detail is not None:
            d['detail'] = self.detail
        return d


@dataclass(frozen=True)
class LegacyGenerateRequest:
    """`POST /generate`: the replaced system's synchronous generation call."""
    prompt: str
    api_key: str | None = None
    format: Format | None = None
    quality: Quality | None = None

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> LegacyGenerateRequest:
        return cls(
            prompt=d['prompt'],
            api_key=d.get('api_key'),
            format=d.get('format'),
            quality=d.get('quality'),
        )

    def to_json(self) -> dict[str, Any]:
        d: dict[str, Any] = {}
        if self.prompt is not None:
            d['prompt'] = self.prompt
        if self.api_key is not None:
            d['api_key'] = self.api_key
        if self.format is not None:
            d['format'] = self.format
        if self.quality is not None:
            d['quality'] = self.quality
        return d


@dataclass(frozen=True)
class LegacyRenderRequest:
    """`POST /render`: the replaced system's synchronous call."""
    code: str | None = None
    files: dict[str, Any] | None = None
    format: Format | None = None
    main: str | None = None
    manifest: str | None = None
    quality: Quality | None = None
    scene_name: str | None = None

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> LegacyRenderRequest:
        return cls(
            code=d.get('code'),
            files=d.get('files'),
            format=d.get('format'),
            main=d.get('main'),
            manifest=d.get('manifest'),
            quality=d.get('quality'),
            scene_name=d.get('scene_name'),
        )

    def to_json(self) -> dict[str, Any]:
        d: dict[str, Any] = {}
        if self.code is not None:
            d['code'] = self.code
        if self.files is not None:
            d['files'] = self.files
        if self.format is not None:
            d['format'] = self.format
        if self.main is not None:
            d['main'] = self.main
        if self.manifest is not None:
            d['manifest'] = self.manifest
        if self.quality is not None:
            d['quality'] = self.quality
        if self.scene_name is not None:
            d['scene_name'] = self.scene_name
        return d


@dataclass(frozen=True)
class LimitsInfo:
    wall_secs: int
    memory_mib: int
    pids: int
    output_mib: int
    max_body_bytes: int
    max_fps: int
    network: bool
    max_file_bytes: int | None = None
    max_project_bytes: int | None = None
    max_project_files: int | None = None

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> LimitsInfo:
        return cls(
            wall_secs=d['wall_secs'],
            memory_mib=d['memory_mib'],
            pids=d['pids'],
            output_mib=d['output_mib'],
            max_body_bytes=d['max_body_bytes'],
            max_fps=d['max_fps'],
            network=d['network'],
            max_file_bytes=d.get('max_file_bytes'),
            max_project_bytes=d.get('max_project_bytes'),
            max_project_files=d.get('max_project_files'),
        )

    def to_json(self) -> dict[str, Any]:
        d: dict[str, Any] = {}
        if self.wall_secs is not None:
            d['wall_secs'] = self.wall_secs
        if self.memory_mib is not None:
            d['memory_mib'] = self.memory_mib
        if self.pids is not None:
            d['pids'] = self.pids
        if self.output_mib is not None:
            d['output_mib'] = self.output_mib
        if self.max_body_bytes is not None:
            d['max_body_bytes'] = self.max_body_bytes
        if self.max_fps is not None:
            d['max_fps'] = self.max_fps
        if self.network is not None:
            d['network'] = self.network
        if self.max_file_bytes is not None:
            d['max_file_bytes'] = self.max_file_bytes
        if self.max_project_bytes is not None:
            d['max_project_bytes'] = self.max_project_bytes
        if self.max_project_files is not None:
            d['max_project_files'] = self.max_project_files
        return d


@dataclass(frozen=True)
class Links:
    """Where a job's resources are."""
    self_: str
    events: str
    video: str
    thumbnail: str
    live: str
    subtitles: str | None = None

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Links:
        return cls(
            self_=d['self'],
            events=d['events'],
            video=d['video'],
            thumbnail=d['thumbnail'],
            live=d['live'],
            subtitles=d.get('subtitles'),
        )

    def to_json(self) -> dict[str, Any]:
        d: dict[str, Any] = {}
        if self.self_ is not None:
            d['self'] = self.self_
        if self.events is not None:
            d['events'] = self.events
        if self.video is not None:
            d['video'] = self.video
        if self.thumbnail is not None:
            d['thumbnail'] = self.thumbnail
        if self.live is not None:
            d['live'] = self.live
        if self.subtitles is not None:
            d['subtitles'] = self.subtitles
        return d


@dataclass(frozen=True)
class Memory:
    rss_bytes: int
    vms_bytes: int
    percent: float

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Memory:
        return cls(
            rss_bytes=d['rss_bytes'],
            vms_bytes=d['vms_bytes'],
            percent=float(d['percent']),
        )

    def to_json(self) -> dict[str, Any]:
        d: dict[str, Any] = {}
        if self.rss_bytes is not None:
            d['rss_bytes'] = self.rss_bytes
        if self.vms_bytes is not None:
            d['vms_bytes'] = self.vms_bytes
        if self.percent is not None:
            d['percent'] = self.percent
        return d


@dataclass(frozen=True)
class MissingBlobs:
    """The answer of `POST /v1/blobs/missing`."""
    missing: list[str]

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> MissingBlobs:
        return cls(
            missing=d['missing'],
        )

    def to_json(self) -> dict[str, Any]:
        d: dict[str, Any] = {}
        if self.missing is not None:
            d['missing'] = self.missing
        return d


@dataclass(frozen=True)
class MissingBlobsRequest:
    """`POST /v1/blobs/missing`: which of these blobs the caller has not uploaded."""
    digests: list[str]

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> MissingBlobsRequest:
        return cls(
            digests=d['digests'],
        )

    def to_json(self) -> dict[str, Any]:
        d: dict[str, Any] = {}
        if self.digests is not None:
            d['digests'] = self.digests
        return d


@dataclass(frozen=True)
class NarrationInfo:
    """The speech provider of narrated renders (never its key)."""
    provider: str
    voice: str
    formats: list[Format]
    model: str | None = None

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> NarrationInfo:
        return cls(
            provider=d['provider'],
            voice=d['voice'],
            formats=d['formats'],
            model=d.get('model'),
        )

    def to_json(self) -> dict[str, Any]:
        d: dict[str, Any] = {}
        if self.provider is not None:
            d['provider'] = self.provider
        if self.voice is not None:
            d['voice'] = self.voice
        if self.formats is not None:
            d['formats'] = self.formats
        if self.model is not None:
            d['model'] = self.model
        return d


@dataclass(frozen=True)
class NarrationResult:
    """What a narrated render said, and when."""
    cues: list[Cue]
    subtitles_url: str

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> NarrationResult:
        return cls(
            cues=[Cue.from_json(x) for x in d['cues']],
            subtitles_url=d['subtitles_url'],
        )

    def to_json(self) -> dict[str, Any]:
        d: dict[str, Any] = {}
        if self.cues is not None:
            d['cues'] = [x.to_json() for x in self.cues]
        if self.subtitles_url is not None:
            d['subtitles_url'] = self.subtitles_url
        return d


@dataclass(frozen=True)
class Notice:
    """A notice on a successful render, such as `no-animation`."""
    code: str
    message: str

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Notice:
        return cls(
            code=d['code'],
            message=d['message'],
        )

    def to_json(self) -> dict[str, Any]:
        d: dict[str, Any] = {}
        if self.code is not None:
            d['code'] = self.code
        if self.message is not None:
            d['message'] = self.message
        return d


@dataclass(frozen=True)
class PluginInfo:
    """A plugin of the allow-list (README, "Plugins")."""
    name: str
    version: str
    engine: Engine
    import_: str

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> PluginInfo:
        return cls(
            name=d['name'],
            version=d['version'],
            engine=d['engine'],
            import_=d['import'],
        )

    def to_json(self) -> dict[str, Any]:
        d: dict[str, Any] = {}
        if self.name is not None:
            d['name'] = self.name
        if self.version is not None:
            d['version'] = self.version
        if self.engine is not None:
            d['engine'] = self.engine
        if self.import_ is not None:
            d['import'] = self.import_
        return d


@dataclass(frozen=True)
class PreviewFrameView:
    """One frame of a preview."""
    animation: int
    time: float
    url: str

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> PreviewFrameView:
        return cls(
            animation=d['animation'],
            time=float(d['time']),
            url=d['url'],
        )

    def to_json(self) -> dict[str, Any]:
        d: dict[str, Any] = {}
        if self.animation is not None:
            d['animation'] = self.animation
        if self.time is not None:
            d['time'] = self.time
        if self.url is not None:
            d['url'] = self.url
        return d


@dataclass(frozen=True)
class PreviewRequest:
    """`POST /v1/previews`: frames of one scene without a video, answered at once."""
    kind: PreviewMode
    animation: int | None = None
    at: float | None = None
    code: str | None = None
    engine: Engine | None = None
    files: dict[str, Any] | None = None
    fps: int | None = None
    main: str | None = None
    manifest: str | None = None
    quality: Quality | None = None
    scene: str | None = None
    seed: int | None = None

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> PreviewRequest:
        return cls(
            kind=d['kind'],
            animation=d.get('animation'),
            at=_opt(d.get('at'), lambda v: float(v)),
            code=d.get('code'),
            engine=d.get('engine'),
            files=d.get('files'),
            fps=d.get('fps'),
            main=d.get('main'),
            manifest=d.get('manifest'),
            quality=d.get('quality'),
            scene=d.get('scene'),
            seed=d.get('seed'),
        )

    def to_json(self) -> dict[str, Any]:
        d: dict[str, Any] = {}
        if self.kind is not None:
            d['kind'] = self.kind
        if self.animation is not None:
            d['animation'] = self.animation
        if self.at is not None:
            d['at'] = self.at
        if self.code is not None:
            d['code'] = self.code
        if self.engine is not None:
            d['engine'] = self.engine
        if self.files is not None:
            d['files'] = self.files
        if self.fps is not None:
            d['fps'] = self.fps
        if self.main is not None:
            d['main'] = self.main
        if self.manifest is not None:
            d['manifest'] = self.manifest
        if self.quality is not None:
            d['quality'] = self.quality
        if self.scene is not None:
            d['scene'] = self.scene
        if self.seed is not None:
            d['seed'] = self.seed
        return d


@dataclass(frozen=True)
class PreviewView:
    """A preview's answer: the scene's animations and the frames, whose PNGs
    are kept for a short time.
    """
    id: str
    animations: list[AnimationInfo]
    frames: list[PreviewFrameView]
    wall_secs: float

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> PreviewView:
        return cls(
            id=d['id'],
            animations=[AnimationInfo.from_json(x) for x in d['animations']],
            frames=[PreviewFrameView.from_json(x) for x in d['frames']],
            wall_secs=float(d['wall_secs']),
        )

    def to_json(self) -> dict[str, Any]:
        d: dict[str, Any] = {}
        if self.id is not None:
            d['id'] = self.id
        if self.animations is not None:
            d['animations'] = [x.to_json() for x in self.animations]
        if self.frames is not None:
            d['frames'] = [x.to_json() for x in self.frames]
        if self.wall_secs is not None:
            d['wall_secs'] = self.wall_secs
        return d


@dataclass(frozen=True)
class ProgressReady:
    """The engine is imported and the scene file is about to run."""
    event: Literal["ready"] = _field(default="ready", init=False)
    engine: Engine
    version: str

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> ProgressReady:
        return cls(
            engine=d['engine'],
            version=d['version'],
        )

    def to_json(self) -> dict[str, Any]:
        d: dict[str, Any] = {}
        d['event'] = self.event
        if self.engine is not None:
            d['engine'] = self.engine
        if self.version is not None:
            d['version'] = self.version
        return d


@dataclass(frozen=True)
class ProgressSceneStarted:
    event: Literal["scene-started"] = _field(default="scene-started", init=False)
    scene: str
    index: int
    count: int

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> ProgressSceneStarted:
        return cls(
            scene=d['scene'],
            index=d['index'],
            count=d['count'],
        )

    def to_json(self) -> dict[str, Any]:
        d: dict[str, Any] = {}
        d['event'] = self.event
        if self.scene is not None:
            d['scene'] = self.scene
        if self.index is not None:
            d['index'] = self.index
        if self.count is not None:
            d['count'] = self.count
        return d


@dataclass(frozen=True)
class ProgressAnimation:
    """An animation (a `play` or `wait`) started."""
    event: Literal["animation"] = _field(default="animation", init=False)
    scene: str
    index: int
    name: str
    cached: bool | None = None
    line: int | None = None
    start: float | None = None

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> ProgressAnimation:
        return cls(
            scene=d['scene'],
            index=d['index'],
            name=d['name'],
            cached=d.get('cached'),
            line=d.get('line'),
            start=_opt(d.get('start'), lambda v: float(v)),
        )

    def to_json(self) -> dict[str, Any]:
        d: dict[str, Any] = {}
        d['event'] = self.event
        if self.scene is not None:
            d['scene'] = self.scene
        if self.index is not None:
            d['index'] = self.index
        if self.name is not None:
            d['name'] = self.name
        if self.cached is not None:
            d['cached'] = self.cached
        if self.line is not None:
            d['line'] = self.line
        if self.start is not None:
            d['start'] = self.start
        return d


@dataclass(frozen=True)
class ProgressFrames:
    """Frames written so far in the current scene."""
    event: Literal["frames"] = _field(default="frames", init=False)
    scene: str
    frames: int

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> ProgressFrames:
        return cls(
            scene=d['scene'],
            frames=d['frames'],
        )

    def to_json(self) -> dict[str, Any]:
        d: dict[str, Any] = {}
        d['event'] = self.event
        if self.scene is not None:
            d['scene'] = self.scene
        if self.frames is not None:
            d['frames'] = self.frames
        return d


@dataclass(frozen=True)
class ProgressPartialMovie:
    """An animation's video piece is finished."""
    event: Literal["partial-movie"] = _field(default="partial-movie", init=False)
    scene: str
    index: int
    cached: bool | None = None

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> ProgressPartialMovie:
        return cls(
            scene=d['scene'],
            index=d['index'],
            cached=d.get('cached'),
        )

    def to_json(self) -> dict[str, Any]:
        d: dict[str, Any] = {}
        d['event'] = self.event
        if self.scene is not None:
            d['scene'] = self.scene
        if self.index is not None:
            d['index'] = self.index
        if self.cached is not None:
            d['cached'] = self.cached
        return d


@dataclass(frozen=True)
class ProgressSceneFinished:
    event: Literal["scene-finished"] = _field(default="scene-finished", init=False)
    scene: str
    index: int
    plays: int
    duration: float

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> ProgressSceneFinished:
        return cls(
            scene=d['scene'],
            index=d['index'],
            plays=d['plays'],
            duration=float(d['duration']),
        )

    def to_json(self) -> dict[str, Any]:
        d: dict[str, Any] = {}
        d['event'] = self.event
        if self.scene is not None:
            d['scene'] = self.scene
        if self.index is not None:
            d['index'] = self.index
        if self.plays is not None:
            d['plays'] = self.plays
        if self.duration is not None:
            d['duration'] = self.duration
        return d


@dataclass(frozen=True)
class ProgressAwaitingPieces:
    """A split render: this worker's own animations are drawn, and the
    video waits for `count` pieces that other workers are drawing.
    """
    event: Literal["awaiting-pieces"] = _field(default="awaiting-pieces", init=False)
    count: int

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> ProgressAwaitingPieces:
        return cls(
            count=d['count'],
        )

    def to_json(self) -> dict[str, Any]:
        d: dict[str, Any] = {}
        d['event'] = self.event
        if self.count is not None:
            d['count'] = self.count
        return d


Progress = Union[ProgressReady, ProgressSceneStarted, ProgressAnimation, ProgressFrames, ProgressPartialMovie, ProgressSceneFinished, ProgressAwaitingPieces]
"""A step of a running render, for progress displays and event streams
(the data of an SSE `progress` event, named by its `event` field).
"""


def progress_from_json(d: dict[str, Any]) -> Progress:
    """Reads one Progress variant."""
    if d.get('event') == 'ready':
        return ProgressReady.from_json(d)
    if d.get('event') == 'scene-started':
        return ProgressSceneStarted.from_json(d)
    if d.get('event') == 'animation':
        return ProgressAnimation.from_json(d)
    if d.get('event') == 'frames':
        return ProgressFrames.from_json(d)
    if d.get('event') == 'partial-movie':
        return ProgressPartialMovie.from_json(d)
    if d.get('event') == 'scene-finished':
        return ProgressSceneFinished.from_json(d)
    if d.get('event') == 'awaiting-pieces':
        return ProgressAwaitingPieces.from_json(d)
    raise ValueError(f"not a Progress: {sorted(d)}")


@dataclass(frozen=True)
class QualityInfo:
    name: Quality
    width: int
    height: int
    fps: int

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> QualityInfo:
        return cls(
            name=d['name'],
            width=d['width'],
            height=d['height'],
            fps=d['fps'],
        )

    def to_json(self) -> dict[str, Any]:
        d: dict[str, Any] = {}
        if self.name is not None:
            d['name'] = self.name
        if self.width is not None:
            d['width'] = self.width
        if self.height is not None:
            d['height'] = self.height
        if self.fps is not None:
            d['fps'] = self.fps
        return d


@dataclass(frozen=True)
class Queue:
    depth: int
    capacity: int

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Queue:
        return cls(
            depth=d['depth'],
            capacity=d['capacity'],
        )

    def to_json(self) -> dict[str, Any]:
        d: dict[str, Any] = {}
        if self.depth is not None:
            d['depth'] = self.depth
        if self.capacity is not None:
            d['capacity'] = self.capacity
        return d


@dataclass(frozen=True)
class RenderRequest:
    """`POST /v1/renders`."""
    cache: bool | None = None
    code: str | None = None
    encoding: Encoding | None = None
    engine: Engine | None = None
    files: dict[str, Any] | None = None
    format: Format | None = None
    fps: int | None = None
    main: str | None = None
    manifest: str | None = None
    narration: bool | None = None
    parallel: Parallel | None = None
    quality: Quality | None = None
    scene: str | None = None
    scenes: list[str] | None = None
    seed: int | None = None
    webhook_url: str | None = None

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> RenderRequest:
        return cls(
            cache=d.get('cache'),
            code=d.get('code'),
            encoding=d.get('encoding'),
            engine=d.get('engine'),
            files=d.get('files'),
            format=d.get('format'),
            fps=d.get('fps'),
            main=d.get('main'),
            manifest=d.get('manifest'),
            narration=d.get('narration'),
            parallel=d.get('parallel'),
            quality=d.get('quality'),
            scene=d.get('scene'),
            scenes=d.get('scenes'),
            seed=d.get('seed'),
            webhook_url=d.get('webhook_url'),
        )

    def to_json(self) -> dict[str, Any]:
        d: dict[str, Any] = {}
        if self.cache is not None:
            d['cache'] = self.cache
        if self.code is not None:
            d['code'] = self.code
        if self.encoding is not None:
            d['encoding'] = self.encoding
        if self.engine is not None:
            d['engine'] = self.engine
        if self.files is not None:
            d['files'] = self.files
        if self.format is not None:
            d['format'] = self.format
        if self.fps is not None:
            d['fps'] = self.fps
        if self.main is not None:
            d['main'] = self.main
        if self.manifest is not None:
            d['manifest'] = self.manifest
        if self.narration is not None:
            d['narration'] = self.narration
        if self.parallel is not None:
            d['parallel'] = self.parallel
        if self.quality is not None:
            d['quality'] = self.quality
        if self.scene is not None:
            d['scene'] = self.scene
        if self.scenes is not None:
            d['scenes'] = self.scenes
        if self.seed is not None:
            d['seed'] = self.seed
        if self.webhook_url is not None:
            d['webhook_url'] = self.webhook_url
        return d


@dataclass(frozen=True)
class SandboxInfo:
    cgroup_version: int

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> SandboxInfo:
        return cls(
            cgroup_version=d['cgroup_version'],
        )

    def to_json(self) -> dict[str, Any]:
        d: dict[str, Any] = {}
        if self.cgroup_version is not None:
            d['cgroup_version'] = self.cgroup_version
        return d


@dataclass(frozen=True)
class StorageInfo:
    """Where finished files are kept (never an address or a credential)."""
    backend: str
    serve: str

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> StorageInfo:
        return cls(
            backend=d['backend'],
            serve=d['serve'],
        )

    def to_json(self) -> dict[str, Any]:
        d: dict[str, Any] = {}
        if self.backend is not None:
            d['backend'] = self.backend
        if self.serve is not None:
            d['serve'] = self.serve
        return d


@dataclass(frozen=True)
class Timings:
    """Seconds a job spent waiting and rendering."""
    queued_secs: float | None = None
    render_secs: float | None = None

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Timings:
        return cls(
            queued_secs=_opt(d.get('queued_secs'), lambda v: float(v)),
            render_secs=_opt(d.get('render_secs'), lambda v: float(v)),
        )

    def to_json(self) -> dict[str, Any]:
        d: dict[str, Any] = {}
        if self.queued_secs is not None:
            d['queued_secs'] = self.queued_secs
        if self.render_secs is not None:
            d['render_secs'] = self.render_secs
        return d


@dataclass(frozen=True)
class Totals:
    """Sums over the plan and all attempts."""
    prompt_tokens: int
    completion_tokens: int
    render_secs: float

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Totals:
        return cls(
            prompt_tokens=d['prompt_tokens'],
            completion_tokens=d['completion_tokens'],
            render_secs=float(d['render_secs']),
        )

    def to_json(self) -> dict[str, Any]:
        d: dict[str, Any] = {}
        if self.prompt_tokens is not None:
            d['prompt_tokens'] = self.prompt_tokens
        if self.completion_tokens is not None:
            d['completion_tokens'] = self.completion_tokens
        if self.render_secs is not None:
            d['render_secs'] = self.render_secs
        return d


@dataclass(frozen=True)
class WebhookView:
    """Where a job's webhook delivery stands. Deliveries are kept in the job
    store, so they survive a restart and are retried by whichever node runs.
    """
    state: WebhookState
    attempts: int
    delivered_at: str | None = None
    last_error: str | None = None
    last_status: int | None = None
    next_attempt_at: str | None = None

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> WebhookView:
        return cls(
            state=d['state'],
            attempts=d['attempts'],
            delivered_at=d.get('delivered_at'),
            last_error=d.get('last_error'),
            last_status=d.get('last_status'),
            next_attempt_at=d.get('next_attempt_at'),
        )

    def to_json(self) -> dict[str, Any]:
        d: dict[str, Any] = {}
        if self.state is not None:
            d['state'] = self.state
        if self.attempts is not None:
            d['attempts'] = self.attempts
        if self.delivered_at is not None:
            d['delivered_at'] = self.delivered_at
        if self.last_error is not None:
            d['last_error'] = self.last_error
        if self.last_status is not None:
            d['last_status'] = self.last_status
        if self.next_attempt_at is not None:
            d['next_attempt_at'] = self.next_attempt_at
        return d


@dataclass(frozen=True)
class Workers:
    busy: int
    idle: int
    warm: int
    rss_bytes: int

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Workers:
        return cls(
            busy=d['busy'],
            idle=d['idle'],
            warm=d['warm'],
            rss_bytes=d['rss_bytes'],
        )

    def to_json(self) -> dict[str, Any]:
        d: dict[str, Any] = {}
        if self.busy is not None:
            d['busy'] = self.busy
        if self.idle is not None:
            d['idle'] = self.idle
        if self.warm is not None:
            d['warm'] = self.warm
        if self.rss_bytes is not None:
            d['rss_bytes'] = self.rss_bytes
        return d
