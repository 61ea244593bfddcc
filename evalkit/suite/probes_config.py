"""Probe kinds a suite declares under `probes.extra` (and the built-in probe files use):

    - name: house-mmlu
      kind: multiple_choice        # or open_answer, prose, open_ended
      data: {path: data/house_mmlu.jsonl}
      prompt: "{{ question }}"
      choices: choices
      answer: answer
      margin: 0.05

An entry without `kind:` is a golden-task-shaped probe (a `TaskConfig`), as before. The
union is discriminated by `kind:`; `extra_probe_list` keeps pydantic's union tag out of
error locations, so a message reads `probes.extra[0].choices`, with that key's line.

This module holds only pydantic models (no data is read here): evalkit.plan.probes builds
each kind's examples and metrics.
"""

from __future__ import annotations

from typing import Annotated, Any, ClassVar, Literal, Union

from pydantic import (
    BaseModel,
    Discriminator,
    Field,
    StrictFloat,
    StrictInt,
    Tag,
    ValidationError,
    ValidatorFunctionWrapHandler,
    WrapValidator,
)
from pydantic_core import InitErrorDetails, PydanticCustomError

from evalkit.suite.strict import StrictModel

NAME_PATTERN = r"^[A-Za-z0-9_.-]+$"
# strict, as the suite's other numbers: `margin: "0.05"` or `margin: true` is an error
Margin = Annotated[StrictFloat, Field(ge=0)]


_Strict = StrictModel


class ProbeDataConfig(_Strict):
    path: str = Field(
        description="a .jsonl/.csv/.parquet file, a saved dataset directory, or (prose) a "
        "folder of .txt files"
    )
    split: str | None = None


class ProbeGenerationConfig(_Strict):
    max_new_tokens: Annotated[StrictInt, Field(gt=0, le=4096)] = 128
    stop: list[str] = Field(default_factory=list)


class _ProbeBase(_Strict):
    name: Annotated[str, Field(pattern=NAME_PATTERN)]
    description: str | None = None
    data: ProbeDataConfig
    id: str | None = Field(default=None, description="the column holding example ids")
    group: str | None = Field(
        default=None, description="a column (subject, category) for per-group breakdowns"
    )

    def margin_for(self, metric: str, default: float) -> float:
        """The margin of one of the kind's metrics: `margins.<metric>` if written, else
        `margin:` (for kinds whose metrics share one unit), else the kind's default."""
        margins = getattr(self, "margins", None)
        if margins is not None and metric in margins.model_fields_set:
            return float(getattr(margins, metric))
        shared = getattr(self, "margin", None)
        if shared is not None and metric in getattr(self, "SHARED_MARGIN", ()):
            return float(shared)
        return float(getattr(margins, metric, default))


class ChoiceMargins(_Strict):
    acc: Margin = 0.05
    acc_norm: Margin = 0.05


class MultipleChoiceProbe(_ProbeBase):
    """Each option's text scored by log-likelihood after the chat-formatted question;
    metrics `acc` and `acc_norm` (log-likelihood per UTF-8 byte of the option)."""

    SHARED_MARGIN: ClassVar[tuple[str, ...]] = ("acc", "acc_norm")
    kind: Literal["multiple_choice"]
    prompt: str = Field(description="a Jinja template over the columns: the question")
    system: str | None = None
    choices: str = Field(default="choices", description="the column holding the options (a list)")
    answer: str = Field(
        default="answer", description="the column holding the right option: index or text"
    )
    margin: Margin | None = Field(default=None, description="for acc and acc_norm (a fraction)")
    margins: ChoiceMargins = Field(default_factory=ChoiceMargins)


class OpenAnswerMargins(_Strict):
    acc: Margin = 0.05
    open_shift: Margin = Field(default=0.10, description="a share of answer tokens")


class OpenAnswerProbe(_ProbeBase):
    """Answered by generation; right when an accepted answer appears as whole words after
    normalisation (as the built-in knowledge-open)."""

    SHARED_MARGIN: ClassVar[tuple[str, ...]] = ("acc",)
    kind: Literal["open_answer"]
    prompt: str = Field(description="a Jinja template over the columns: the question")
    system: str | None = None
    accepted: str = Field(
        default="accepted", description="the column: a list of accepted answers, or one"
    )
    generation: ProbeGenerationConfig = Field(
        default_factory=lambda: ProbeGenerationConfig(max_new_tokens=32)
    )
    margin: Margin | None = Field(default=None, description="for acc (a fraction)")
    margins: OpenAnswerMargins = Field(default_factory=OpenAnswerMargins)


class ProseMargins(_Strict):
    perplexity: Margin = Field(default=0.10, description="a perplexity ratio")
    bits_per_byte: Margin = Field(default=0.03, description="bits per byte")
    kl_from_base: Margin = Field(default=0.15, description="nats per token")
    top1_agreement: Margin = Field(default=0.17, description="a share of positions")


class ProseProbe(_ProbeBase):
    """Perplexity, bits per byte and KL(base‖variant) over documents (one bootstrap unit
    each): a `text` column, or `data: {path: folder/}` of .txt files (id: the file name)."""

    kind: Literal["prose"]
    text: str = Field(default="text", description="the column holding each document")
    margins: ProseMargins = Field(default_factory=ProseMargins)


class OpenEndedMargins(_Strict):
    distinct_2: Margin = 0.05
    repeated_3gram_rate: Margin = 0.05
    length_words: Margin = Field(default=0.5, description="a length ratio")
    cross_answer_overlap: Margin = 0.10


class OpenEndedProbe(_ProbeBase):
    """Open requests; answers measured for distinct bigrams, repeated trigrams, length and
    overlap with the answers to the other prompts."""

    SHARED_MARGIN: ClassVar[tuple[str, ...]] = (
        "distinct_2",
        "repeated_3gram_rate",
        "cross_answer_overlap",
    )
    kind: Literal["open_ended"]
    prompt: str = Field(description="a Jinja template over the columns: the request")
    system: str | None = None
    generation: ProbeGenerationConfig = Field(
        default_factory=lambda: ProbeGenerationConfig(max_new_tokens=96)
    )
    margin: Margin | None = Field(
        default=None, description="for the n-gram shares (not length, a ratio)"
    )
    margins: OpenEndedMargins = Field(default_factory=OpenEndedMargins)


KindProbe = Union[MultipleChoiceProbe, OpenAnswerProbe, ProseProbe, OpenEndedProbe]  # noqa: UP007
PROBE_KINDS: dict[str, type[_ProbeBase]] = {
    "multiple_choice": MultipleChoiceProbe,
    "open_answer": OpenAnswerProbe,
    "prose": ProseProbe,
    "open_ended": OpenEndedProbe,
}
# The tag of a golden-task-shaped entry (no `kind:`).
TASK_TAG = "task"


def _tag(value: Any) -> str:
    kind = value.get("kind", TASK_TAG) if isinstance(value, dict) else getattr(value, "kind", None)
    return str(kind) if kind is not None else TASK_TAG


def extra_probes_type(task_config: type[BaseModel]) -> Any:
    """The type of `probes.extra`: a list whose entries are a kind by their `kind:`, else
    a `task_config`, validated with the union tag kept out of error locations."""
    members = [Annotated[task_config, Tag(TASK_TAG)]]
    members += [Annotated[model, Tag(kind)] for kind, model in PROBE_KINDS.items()]
    entry: Any = Annotated[Union[tuple(members)], Discriminator(_tag)]  # noqa: UP007
    return Annotated[list[entry], WrapValidator(untag_errors)]


def _forgotten_kind(errors: list[Any]) -> dict[int, InitErrorDetails]:
    """Task-shaped entries (no `kind:`) with keys only a probe kind has: the kind was
    left out. One error per such entry, naming the kinds that take the key, instead of an
    unknown key plus the task keys it lacks."""
    out: dict[int, InitErrorDetails] = {}
    for err in errors:
        loc = tuple(err["loc"])
        if err["type"] != "extra_forbidden" or len(loc) != 3 or loc[1] != TASK_TAG:
            continue
        key = str(loc[2])
        kinds = [k for k, model in PROBE_KINDS.items() if key in model.model_fields]
        if kinds and loc[0] not in out:
            message = (
                f"'{key}' is a key of a probe kind ({', '.join(kinds)}); add `kind: {kinds[0]}`"
                " (an entry without `kind:` is a task-shaped probe)"
            )
            out[int(loc[0])] = InitErrorDetails(
                type=PydanticCustomError("probe_kind_missing", message),
                loc=(loc[0], key),
                input=err.get("input"),
            )
    return out


def untag_errors(value: Any, handler: ValidatorFunctionWrapHandler) -> Any:
    """Validate a list of extra probes, dropping the union tag from error locations (so
    `probes.extra[0].multiple_choice.choices` reads `probes.extra[0].choices`, whose line
    the suite records), naming the known kinds when `kind:` is misspelt, and saying so
    when it is missing."""
    try:
        return handler(value)
    except ValidationError as exc:
        errors = exc.errors()
        forgotten = _forgotten_kind(list(errors))
        details: list[InitErrorDetails] = list(forgotten.values())
        for err in errors:
            loc = tuple(err["loc"])
            if loc and loc[0] in forgotten:
                continue
            if len(loc) >= 2 and isinstance(loc[0], int) and loc[1] in (*PROBE_KINDS, TASK_TAG):
                loc = (loc[0], *loc[2:])
            if err["type"] == "union_tag_invalid":  # a misspelt kind: say which exist
                expected = ", ".join(PROBE_KINDS) + " (or no kind: for a task-shaped probe)"
                details.append(
                    InitErrorDetails(
                        type="literal_error",
                        loc=(*loc, "kind"),
                        input=err.get("ctx", {}).get("tag"),
                        ctx={"expected": expected},
                    )
                )
                continue
            details.append(
                InitErrorDetails(
                    type=err["type"], loc=loc, input=err.get("input"), ctx=err.get("ctx", {})
                )
            )
        raise ValidationError.from_exception_data("extra", details) from None
