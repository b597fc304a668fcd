"""Lesson 6's building blocks: your own data, a chat model.

- :func:`make_chat_data` generates short conversations about the course's stories in the *messages*
  format that chat models and TRL's ``SFTTrainer`` use: a list of ``{"role", "content"}`` per row, e.g.::

      user:      "Text: Mira lives in Oslo. Tom is a baker.\\nQuestion: Is Oslo a home, job, pet, colour or food?"
      assistant: "home"
      user:      "And baker?"
      assistant: "job"

- :data:`CHAT_TEMPLATE` is the course model's chat template (Jinja, as a hub chat model ships one). It
  uses only the tokenizer's existing special tokens; each turn is ``Role: content</s>`` after one ``<s>``::

      <s>User: Is Oslo a home?</s>Assistant: home</s>

  The assistant's text, with the space before it and its ``</s>``, sits between ``{% generation %}`` and
  ``{% endgeneration %}``: those are the tokens a fine-tune learns (``</s>`` included, so that the model
  learns to stop); ``<s>``, the role headers and the system and user turns are context only. The space
  belongs to the answer because the tokenizer reads ``" home"`` as one token; a prompt ending in
  ``"Assistant: "`` would split it.
- :func:`assistant_labels` builds the assistant-only labels by hand, from the rendered turns: what
  ``SFTConfig(assistant_only_loss=True)`` does with the template's generation markers.
- :func:`has_generation_markers` says whether a template marks the assistant's tokens (TRL's
  ``assistant_only_loss`` needs them; most hub templates ship without), and
  :func:`labelled_conversations` labels a data set with :func:`assistant_labels` for any template that
  lacks them, ready for ``SFTTrainer`` as it is.
- :func:`validate_conversations` checks a learner's own file, line by line, and says what is wrong with
  each dropped line: nothing is dropped silently.
- :func:`chat_replies` and :func:`score_chat` answer the generated conversations with a model and score
  the replies (answer accuracy per turn and second-turn consistency).
"""

from __future__ import annotations

import json
import random
import re
from dataclasses import dataclass, field
from pathlib import Path

from .data import ATTRIBUTES, FACT_TEMPLATES, KINDS, format_example, held_out_words, make_world
from .finetune import IGNORE_INDEX
from .validate import module, positive_int, shown
from .validate import tokenizer as a_tokenizer

__all__ = [
    "ROLES",
    "CHAT_TEMPLATE",
    "FOLLOW_UPS",
    "make_chat_data",
    "question_words",
    "conversation_problem",
    "rendered_turns",
    "assistant_labels",
    "has_generation_markers",
    "labelled_conversations",
    "Dropped",
    "ValidationReport",
    "validate_conversations",
    "chat_replies",
    "score_chat",
]

ROLES = ("system", "user", "assistant")

# The course model's chat template. A copy is stored as ``chat_template.jinja`` beside the course model's
# tokenizer files, so ``AutoTokenizer.from_pretrained(course_model_path())`` has it (a test keeps the two
# equal). It refuses a conversation whose roles are not: an optional system message, then user and
# assistant alternating. ``add_generation_prompt=True`` ends the text with ``Assistant:``.
CHAT_TEMPLATE = """{{- bos_token }}
{%- set offset = 1 if messages[0]['role'] == 'system' else 0 %}
{%- for message in messages %}
{%- if message['role'] == 'system' and loop.index0 > 0 %}
{{- raise_exception('only the first message may be a system message') }}
{%- elif message['role'] != 'system' and message['role'] != ['user', 'assistant'][(loop.index0 - offset) % 2] %}
{{- raise_exception('after an optional system message, roles must alternate user, assistant, user, ...') }}
{%- endif %}
{%- if message['role'] == 'assistant' %}
{{- 'Assistant:' }}{% generation %}{{ ' ' + message['content'] + eos_token }}{% endgeneration %}
{%- else %}
{{- ('System: ' if message['role'] == 'system' else 'User: ') + message['content'] + eos_token }}
{%- endif %}
{%- endfor %}
{%- if add_generation_prompt %}
{{- 'Assistant:' }}
{%- endif %}"""

# --------------------------------------------------------------------------------------------------
# Generated conversations
# --------------------------------------------------------------------------------------------------

# The second user turn. "other" asks about a second word of the story without repeating the question,
# so it needs the first turn to be understood; "repeat" asks again about the first word, so its right
# answer is the first answer (the second-turn consistency check).
FOLLOW_UPS = {
    "other": ("And {w}?", "What about {w}?", "And the word {w}?"),
    "repeat": ("What did you just say {w} was?", "Sorry, what was {w} again?"),
}
KIND_OF = {w: kind for kind, words in KINDS.items() for w in words}


def _story(rng: random.Random) -> tuple[str, list[str]]:
    """A story of 1-2 people with 1-3 facts each (as the course task's), and the words of its facts."""
    people = make_world(rng, rng.randint(1, 2))
    told = [(p, a) for p in people for a in rng.sample(list(ATTRIBUTES), rng.randint(1, 3))]
    rng.shuffle(told)
    sentences = [rng.choice(FACT_TEMPLATES[a]).format(n=p.name, v=p.facts[a]) for p, a in told]
    return " ".join(sentences), sorted({p.facts[a] for p, a in told})


def _question(text: str, word: str) -> str:
    """The first user turn: the course task's prompt without its ``Answer:`` cue (the template has one)."""
    prompt = format_example(text, word)
    return prompt[: -len("\nAnswer:")]


def _pick(rng: random.Random, words: list[str]) -> str:
    """One of ``words``, each kind about equally often whatever the story mentions most."""
    kind = rng.choice(sorted({KIND_OF[w] for w in words}))
    return rng.choice([w for w in words if KIND_OF[w] == kind])


def _conversations(n: int, rng: random.Random, allowed: set[str], seen: set[str], system: str | None) -> list[dict]:
    """``n`` conversations asking only about ``allowed`` words, none whose messages are in ``seen``
    (which grows)."""
    out, tries = [], 0
    while len(out) < n:
        tries += 1
        if tries > 100 * n:
            raise ValueError(f"could not make {n} distinct conversations from the allowed words")
        text, words = _story(rng)
        candidates = [w for w in words if w in allowed]
        if not candidates:
            continue
        first = _pick(rng, candidates)
        others = [w for w in candidates if w != first]
        kind = "other" if others and rng.random() < 0.5 else "repeat"
        second = _pick(rng, others) if kind == "other" else first
        messages = [] if system is None else [{"role": "system", "content": system}]
        messages += [
            {"role": "user", "content": _question(text, first)},
            {"role": "assistant", "content": KIND_OF[first]},
            {"role": "user", "content": rng.choice(FOLLOW_UPS[kind]).format(w=second)},
            {"role": "assistant", "content": KIND_OF[second]},
        ]
        key = json.dumps(messages)
        if key in seen:
            continue
        seen.add(key)
        out.append(
            {
                "messages": messages,
                "words": [first, second],
                "answers": [KIND_OF[first], KIND_OF[second]],
                "follow_up": kind,
            }
        )
    return out


def make_chat_data(
    n_train: int = 2000,
    n_validation: int = 200,
    n_test: int = 200,
    seed: int = 0,
    n_test_unseen: int = 200,
    held_out_share: float = 0.18,
    system: str | None = None,
):
    """Two-turn conversations about the course's stories as a ``datasets.DatasetDict`` with disjoint splits
    ``train``, ``validation``, ``test`` and ``test_unseen``; the same for the same ``seed``.

    Columns:

    - ``messages``: list of ``{"role", "content"}``: (``system`` if given,) user, assistant, user,
      assistant. The first user turn is the course task's question (:func:`qlora_course.data.format_example`
      without ``Answer:``); the second is a follow-up, see :data:`FOLLOW_UPS`. Every answer is one word:
      ``home``, ``job``, ``pet``, ``colour`` or ``food``.
    - ``words``: the word each user turn asks about (two strings; the same twice for a ``repeat``).
    - ``answers``: the expected answer of each assistant turn (two strings, equal to the assistant contents).
    - ``follow_up``: ``"other"`` (the second turn asks about another word of the story) or ``"repeat"``
      (it asks again about the first word: a consistent model gives its first answer again).

    A conversation *mentions* a word in its questions when the word is one of its ``words``: the word a
    user turn asks about. ``train``, ``validation`` and ``test`` mention only words outside
    :func:`qlora_course.data.held_out_words`; ``test_unseen`` mentions only held-out words, so no
    training question mentions them. Held-out words may still occur in the *stories* of any split (as
    in the pretraining corpus): only the questions avoid them. No conversation (its ``messages``) appears
    twice, within or across splits.
    """
    from datasets import Dataset, DatasetDict

    sizes = {"train": n_train, "validation": n_validation, "test": n_test, "test_unseen": n_test_unseen}
    for name, value in sizes.items():
        positive_int(value, f"n_{name}")
    if isinstance(held_out_share, bool) or not isinstance(held_out_share, (int, float)) or not 0 < held_out_share < 1:
        raise ValueError(f"held_out_share must be a number between 0 and 1, got {shown(held_out_share)}")
    if system is not None and (not isinstance(system, str) or not system.strip()):
        raise ValueError(f"system must be None or a non-empty string, got {shown(system)}")
    unseen = held_out_words(held_out_share, seed)
    seen_words = set(KIND_OF) - unseen
    rng, keys = random.Random(f"chat-{seed}"), set()
    rows = _conversations(n_train + n_validation + n_test, rng, seen_words, keys, system)
    rows += _conversations(n_test_unseen, rng, unseen, keys, system)
    out, start = {}, 0
    for split, size in sizes.items():
        out[split] = Dataset.from_list(rows[start : start + size])
        start += size
    return DatasetDict(out)


def question_words(messages: list[dict]) -> list[str]:
    """The words the user turns of a generated conversation ask about, read back from the text (not from
    the ``words`` column): the word after ``Question: Is`` and the word in a :data:`FOLLOW_UPS` phrasing."""
    import re

    patterns = [re.compile(r"Question: Is (\w+) a ")]
    for phrasings in FOLLOW_UPS.values():
        patterns += [re.compile("^" + re.escape(p).replace(re.escape("{w}"), r"(\w+)") + "$") for p in phrasings]
    found = []
    for m in messages:
        if m["role"] == "user":
            hits = [h.group(1) for p in patterns if (h := p.search(m["content"]))]
            if len(hits) != 1:
                raise ValueError(f"not a generated question: {m['content']!r}")
            found.append(hits[0])
    return found


# --------------------------------------------------------------------------------------------------
# The assistant-only labels, by hand
# --------------------------------------------------------------------------------------------------


def conversation_problem(messages) -> tuple[str, str] | None:
    """``None`` if ``messages`` is a conversation the course can train on, else ``(reason, detail)``.

    Checked in this order (the first failure is the one reported): a non-empty list (``"no messages"``);
    each message a dict with string ``role`` and ``content`` (``"message without role/content"``);
    roles among :data:`ROLES` (``"unknown role"``); no empty or all-space content (``"empty content"``);
    an optional system message first, then user and assistant alternating, ending with the assistant
    (``"roles out of order"``).
    """
    if not isinstance(messages, list) or not messages:
        return "no messages", f"'messages' must be a non-empty list of messages, got {shown(messages)[:80]}"
    for i, m in enumerate(messages):
        if not isinstance(m, dict) or not isinstance(m.get("role"), str) or not isinstance(m.get("content"), str):
            return "message without role/content", f"message {i} needs string 'role' and 'content': {str(m)[:80]}"
    for i, m in enumerate(messages):
        if m["role"] not in ROLES:
            return "unknown role", f"message {i} has role {m['role']!r}; roles are {', '.join(ROLES)}"
    for i, m in enumerate(messages):
        if not m["content"].strip():
            return "empty content", f"message {i} ({m['role']}) has empty content"
    roles = [m["role"] for m in messages]
    offset = 1 if roles[0] == "system" else 0
    for i, role in enumerate(roles[offset:], start=offset):
        expected = ("user", "assistant")[(i - offset) % 2]
        if role != expected:
            where = "first" if i == offset else f"after {roles[i - 1]!r}"
            return "roles out of order", f"message {i} is {role!r} {where}; expected {expected!r}"
    if roles[-1] != "assistant":
        return (
            "roles out of order",
            f"the last message is {roles[-1]!r}; a training conversation ends with the assistant",
        )
    return None


def rendered_turns(tokenizer, messages: list[dict]) -> list[tuple[str, bool]]:
    """The rendered text of ``messages`` cut into ``(piece, trained)`` pairs, in order, using only the
    tokenizer's chat template: the text each message adds to the rendering of the ones before it, and,
    before each assistant message, the generation prompt (its header). Trained are the assistant pieces.

    For :data:`CHAT_TEMPLATE`: ``[("<s>User: Is Oslo a home?</s>", False), ("Assistant:", False),
    (" home</s>", True)]``. Raises ``ValueError`` if the template re-renders earlier turns differently once
    a later one is added (then no such cut exists).
    """

    a_tokenizer(tokenizer)
    if getattr(tokenizer, "chat_template", None) is None:
        raise ValueError("tokenizer has no chat template: set tokenizer.chat_template = CHAT_TEMPLATE")
    # a training conversation, or a prompt: one that an assistant's reply would make a conversation
    problem = conversation_problem(messages)
    reply = {"role": "assistant", "content": "reply"}
    if problem is not None and not (isinstance(messages, list) and conversation_problem([*messages, reply]) is None):
        raise ValueError(f"messages: {problem[0]}: {problem[1]}")

    def render(msgs, prompt=False):
        return tokenizer.apply_chat_template(msgs, tokenize=False, add_generation_prompt=prompt) if msgs else ""

    pieces, done = [], ""
    for i, m in enumerate(messages):
        steps = [(render(messages[:i], prompt=True), False)] if m["role"] == "assistant" else []
        steps.append((render(messages[: i + 1]), m["role"] == "assistant"))
        for text, trained in steps:
            if not text.startswith(done):
                raise ValueError(f"the chat template renders the turns before message {i} differently once it is added")
            pieces.append((text[len(done) :], trained))
            done = text
    return pieces


def assistant_labels(tokenizer, messages: list[dict], max_length: int | None = None) -> dict:
    """``{"input_ids", "labels"}`` (lists of int, equal length) of one conversation: the ids of the rendered
    chat, and labels equal to them on the assistant pieces (content and ``</s>``) and ``IGNORE_INDEX``
    (-100) on everything else (``<s>``, role headers, system and user turns).

    Each piece of :func:`rendered_turns` is tokenized on its own (no special tokens added: the template
    writes ``<s>``) and the ids are concatenated; a check that this equals tokenizing the whole text
    raises ``ValueError`` if a token crossed a turn boundary. ``max_length`` keeps the first
    ``max_length`` tokens (as ``SFTConfig``'s default ``truncation_mode="keep_start"``); ``ValueError`` if
    no trained token is left. A conversation that fails :func:`conversation_problem` (ending with a user
    turn, say: nothing after it is trained) raises ``ValueError``.

    For :data:`CHAT_TEMPLATE` these are exactly the tokens between its ``{% generation %}`` markers (a test
    checks them against TRL's ``assistant_only_loss``). A template that writes something after an
    assistant's end-of-turn token (a newline, say) would have that trained here too.
    """
    a_tokenizer(tokenizer)
    if getattr(tokenizer, "chat_template", None) is None:
        raise ValueError("tokenizer has no chat template: set tokenizer.chat_template = CHAT_TEMPLATE")
    if max_length is not None:
        positive_int(max_length, "max_length")
    problem = conversation_problem(messages)
    if problem is not None:
        raise ValueError(f"messages: {problem[0]}: {problem[1]}")
    ids, labels, text = [], [], ""
    for piece, trained in rendered_turns(tokenizer, messages):
        piece_ids = tokenizer(piece, add_special_tokens=False)["input_ids"]
        ids += piece_ids
        labels += piece_ids if trained else [IGNORE_INDEX] * len(piece_ids)
        text += piece
    if ids != tokenizer(text, add_special_tokens=False)["input_ids"]:
        raise ValueError("a token of the rendered chat crosses a turn boundary: the turns cannot be labelled apart")
    if max_length is not None:
        ids, labels = ids[:max_length], labels[:max_length]
        if all(label == IGNORE_INDEX for label in labels):
            raise ValueError(f"no assistant token is left in the first max_length={max_length} tokens")
    return {"input_ids": ids, "labels": labels}


_MARKER = re.compile(r"\{%-?\s*generation\s*-?%\}")


def has_generation_markers(template) -> bool:
    """True if the chat template ``template`` (a string, or a tokenizer with ``chat_template``) wraps what
    the assistant says in ``{% generation %}`` ... ``{% endgeneration %}``, whitespace-trimming variants
    included: what ``return_assistant_tokens_mask`` and TRL's ``assistant_only_loss`` read. A tokenizer
    with several named templates is judged by its ``default`` one."""
    template = getattr(template, "chat_template", template)
    if isinstance(template, dict):
        template = template.get("default")
    if template is None:
        return False
    if not isinstance(template, str):
        raise TypeError(f"template must be a chat template string or a tokenizer, got {type(template).__name__}")
    return _MARKER.search(template) is not None


def labelled_conversations(dataset, tokenizer, max_length: int):
    """``dataset`` (a ``datasets.Dataset`` with a ``messages`` column) as a tokenized data set with
    ``input_ids`` and ``labels`` (lists of int, -100 off the assistant's turns) from
    :func:`assistant_labels`, each row cut to ``max_length`` tokens. Give it to ``SFTTrainer`` as the
    ``train_dataset`` (with ``assistant_only_loss`` left False): TRL sees the tokens are there and trains
    on these labels as they are. It is what ``assistant_only_loss=True`` does, for a chat template
    without generation markers.

    Every row must be a conversation :func:`assistant_labels` accepts; ``ValueError`` names the first one
    that is not (validate your file first: :func:`validate_conversations`).
    """
    from datasets import Dataset

    positive_int(max_length, "max_length")
    if not isinstance(dataset, Dataset) or "messages" not in dataset.column_names:
        raise TypeError("dataset must be a datasets.Dataset with a 'messages' column")
    rows = {"input_ids": [], "labels": []}
    for i, messages in enumerate(dataset["messages"]):
        try:
            row = assistant_labels(tokenizer, messages, max_length=max_length)
        except ValueError as err:
            raise ValueError(f"dataset row {i}: {err}") from None
        rows["input_ids"].append(row["input_ids"])
        rows["labels"].append(row["labels"])
    return Dataset.from_dict(rows)


# --------------------------------------------------------------------------------------------------
# Checking a learner's own file
# --------------------------------------------------------------------------------------------------

# The reasons a row is dropped, in the order they are checked.
REASONS = (
    "not UTF-8",
    "not JSON",
    "no messages",
    "message without role/content",
    "unknown role",
    "empty content",
    "roles out of order",
    "special token in content",
    "too long",
)


@dataclass(frozen=True)
class Dropped:
    """One dropped row: where it was (``line``: 1-based line of a file, or 0-based index of a list or
    ``Dataset``), why (one of the reasons, the first check it failed) and the detail."""

    line: int
    reason: str
    detail: str


@dataclass
class ValidationReport:
    """What :func:`validate_conversations` found.

    ``kept``: a ``datasets.Dataset`` with one column ``messages`` (each message reduced to ``role`` and
    ``content``, the only keys the template reads); ``kept_lines``: where each kept row was; ``dropped``:
    one :class:`Dropped` per dropped row; ``unit``: ``"line"`` (a file) or ``"row"`` (a list or Dataset).
    """

    kept: object
    kept_lines: list[int]
    dropped: list[Dropped] = field(default_factory=list)
    unit: str = "line"

    def counts(self) -> dict[str, int]:
        """``{"kept": n, reason: n, ...}`` for the reasons that occurred, in checking order."""
        by_reason = {r: sum(d.reason == r for d in self.dropped) for r in REASONS}
        return {"kept": len(self.kept_lines), **{r: n for r, n in by_reason.items() if n}}

    def table(self) -> str:
        """The counts as a text table, with the first few lines of each reason."""
        rows = [("kept", len(self.kept_lines), "")]
        for reason, n in self.counts().items():
            if reason != "kept":
                lines = [d.line for d in self.dropped if d.reason == reason]
                rows.append((reason, n, ", ".join(map(str, lines[:5])) + (", ..." if n > 5 else "")))
        rows.append(("total", len(self.kept_lines) + len(self.dropped), ""))
        width = max(len(r[0]) for r in rows)
        head = f"{'reason':{width}}  {'count':>5}  {self.unit}s"
        return "\n".join([head] + [f"{r:{width}}  {n:>5}  {where}".rstrip() for r, n, where in rows])

    def __str__(self) -> str:
        shown_rows = [f"{self.unit} {d.line}: {d.reason}: {d.detail}" for d in self.dropped[:20]]
        more = [f"... and {len(self.dropped) - 20} more"] if len(self.dropped) > 20 else []
        return "\n".join([self.table(), *(["", "dropped:"] if self.dropped else []), *shown_rows, *more])


def _rows(source) -> tuple[list[tuple[int, object, tuple[str, str] | None]], str]:
    """``([(line, row or None, problem or None)], unit)``: the rows of ``source`` as Python objects, with
    a file's undecodable or unparsable lines as problems."""
    from datasets import Dataset

    if isinstance(source, (str, Path)):
        path = Path(source)
        if not path.is_file():
            raise ValueError(f"source must be a JSONL file, a list of dicts or a datasets.Dataset; no file {path}")
        lines = path.read_bytes().split(b"\n")
        if lines and lines[-1] == b"":
            lines = lines[:-1]  # the newline that ends the last line
        out = []
        for number, raw in enumerate(lines, start=1):
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError as e:
                out.append((number, None, ("not UTF-8", f"byte {raw[e.start]:#04x} at position {e.start}")))
                continue
            if not text.strip():
                out.append((number, None, ("not JSON", "blank line")))
                continue
            try:
                out.append((number, json.loads(text), None))
            except json.JSONDecodeError as e:
                out.append((number, None, ("not JSON", str(e))))
        return out, "line"
    if isinstance(source, Dataset):
        return [(i, row, None) for i, row in enumerate(source)], "row"
    if isinstance(source, list):
        return [(i, row, None) for i, row in enumerate(source)], "row"
    raise ValueError(
        f"source must be a path to a JSONL file, a list of dicts or a datasets.Dataset, got {shown(source)}"
    )


def validate_conversations(source, tokenizer, max_length: int) -> ValidationReport:
    """Check every row of ``source`` (a path to a JSONL file with one ``{"messages": [...]}`` object per
    line, a list of such dicts, or a ``datasets.Dataset`` with a ``messages`` column) and report, per
    dropped row, the first thing wrong with it (see ``REASONS``): not UTF-8 (the offending byte), not
    JSON (the parser's message), no ``messages`` list, a message without string ``role``/``content``,
    an unknown role, empty content, roles out of order (an optional system message first, then user and
    assistant alternating, ending with the assistant), a special token of the tokenizer written in the
    content (it would be read as a control token, e.g. ``</s>`` as end of turn), or longer than
    ``max_length`` tokens once rendered with the tokenizer's chat template (by how many).

    Nothing is dropped silently: every row is either in ``report.kept`` or in ``report.dropped``. A blank
    line of a file is ``"not JSON"``; only the newline ending the last line is not a row.
    """
    positive_int(max_length, "max_length")
    if getattr(tokenizer, "chat_template", None) is None:
        raise ValueError("tokenizer has no chat template: set tokenizer.chat_template = CHAT_TEMPLATE")
    rows, unit = _rows(source)
    specials = [t for t in tokenizer.all_special_tokens if t]
    kept, kept_lines, dropped = [], [], []
    for line, row, problem in rows:
        if problem is None and not isinstance(row, dict):
            problem = ("no messages", f"each {unit} must be an object with a 'messages' list, got {shown(row)[:80]}")
        if problem is None:
            problem = conversation_problem(row.get("messages"))
        if problem is None:
            messages = [{"role": m["role"], "content": m["content"]} for m in row["messages"]]
            found = [(i, t) for i, m in enumerate(messages) for t in specials if t in m["content"]]
            if found:
                problem = ("special token in content", f"message {found[0][0]} contains {found[0][1]!r}")
        if problem is None:
            n = len(tokenizer.apply_chat_template(messages, tokenize=True, return_dict=True)["input_ids"])
            if n > max_length:
                problem = ("too long", f"{n} tokens, {n - max_length} over max_length={max_length}")
        if problem is None:
            kept.append(messages)
            kept_lines.append(line)
        else:
            dropped.append(Dropped(line, *problem))
    from datasets import Dataset

    kept_ds = Dataset.from_dict({"messages": kept})
    return ValidationReport(kept=kept_ds, kept_lines=kept_lines, dropped=dropped, unit=unit)


# --------------------------------------------------------------------------------------------------
# Answering and scoring the generated conversations
# --------------------------------------------------------------------------------------------------


def chat_replies(
    model,
    tokenizer,
    conversations: list[list[dict]],
    own_answers: bool = True,
    batch_size: int = 32,
    max_new_tokens: int = 4,
) -> list[list[str]]:
    """The model's greedy reply (stripped text, up to ``</s>``) to every user turn of each conversation:
    one list per conversation, one string per assistant turn.

    bitsandbytes' 4-bit layers stay on their training path while generating
    (:func:`qlora_course.evaluation.bnb_training_path`): on a CPU with AVX512-BF16 an eval-mode call would
    otherwise repack their weights for good into a kernel without a backward, and a fine-tune after this
    "before" score would silently train no layer below the adapters' inputs.

    With ``own_answers=True`` each later turn sees the model's *own* earlier replies in place of the data's
    assistant turns, as in a real chat (what the consistency check needs); with ``False`` it sees the
    data's answers. Prompts are rendered with ``add_generation_prompt=True`` and padded on the left.
    """
    import torch

    from .evaluation import bnb_training_path

    module(model, "model")
    a_tokenizer(tokenizer)
    positive_int(batch_size, "batch_size")
    positive_int(max_new_tokens, "max_new_tokens")
    # a list, or a data set's column (datasets' Column is a sequence, not a list)
    if isinstance(conversations, (str, bytes, dict)) or not hasattr(conversations, "__len__") or not len(conversations):
        got = shown(conversations)[:80]
        raise TypeError(f"conversations must be a non-empty list of conversations (lists of messages), got {got}")
    conversations = list(conversations)
    if tokenizer.pad_token_id is None:
        raise ValueError("tokenizer has no pad token: set one (distinct from EOS) before batched generation")
    for i, messages in enumerate(conversations):
        if (problem := conversation_problem(messages)) is not None:
            raise ValueError(f"conversations[{i}]: {problem[0]}: {problem[1]}")
    replies: list[list[str]] = [[] for _ in conversations]
    n_turns = max(sum(m["role"] == "assistant" for m in c) for c in conversations)
    device = next(model.parameters()).device
    was_training, side = model.training, tokenizer.padding_side
    model.eval()
    tokenizer.padding_side = "left"
    try:
        for turn in range(n_turns):
            todo = []
            for i, messages in enumerate(conversations):
                assistant_at = [j for j, m in enumerate(messages) if m["role"] == "assistant"]
                if turn < len(assistant_at):
                    history = [dict(m) for m in messages[: assistant_at[turn]]]
                    if own_answers:
                        for j, reply in zip(assistant_at[:turn], replies[i], strict=True):
                            history[j]["content"] = reply or "?"  # an empty reply still makes a turn
                    todo.append((i, tokenizer.apply_chat_template(history, tokenize=False, add_generation_prompt=True)))
            for start in range(0, len(todo), batch_size):
                chunk = todo[start : start + batch_size]
                enc = tokenizer([t for _, t in chunk], return_tensors="pt", padding=True, add_special_tokens=False)
                # the guard goes inside: model.eval() above would undo one set around this function
                with torch.no_grad(), bnb_training_path(model):
                    gen = model.generate(
                        **enc.to(device),
                        do_sample=False,
                        max_new_tokens=max_new_tokens,
                        pad_token_id=tokenizer.pad_token_id,
                        eos_token_id=tokenizer.eos_token_id,
                    )
                texts = tokenizer.batch_decode(gen[:, enc["input_ids"].shape[1] :], skip_special_tokens=True)
                for (i, _), text in zip(chunk, texts, strict=True):
                    replies[i].append(text.strip())
    finally:
        tokenizer.padding_side = side
        model.train(was_training)
    return replies


def score_chat(answers: list[list[str]], replies: list[list[str]], follow_up: list[str]) -> dict:
    """Scores of ``replies`` (from :func:`chat_replies`) against ``answers`` (the data's ``answers``
    column), both one list of strings per conversation:

    - ``first_turn``, ``second_turn``: the share of exact matches (stripped) at each turn;
    - ``accuracy``: the share over all assistant turns;
    - ``consistency``: over the ``"repeat"`` conversations (``follow_up``), the share whose second reply
      equals the first one, right or wrong; ``n_repeat``: how many there were (``consistency`` is ``nan``
      if none).
    """
    for name, value in (("answers", answers), ("replies", replies)):
        if not isinstance(value, (list, tuple)) or not all(
            isinstance(turns, (list, tuple)) and all(isinstance(t, str) for t in turns) for turns in value
        ):
            raise TypeError(
                f"{name} must be a list of lists of strings (one per conversation), got {shown(value)[:80]}"
            )
    if not isinstance(follow_up, (list, tuple)) or not all(isinstance(k, str) for k in follow_up):
        raise TypeError(f"follow_up must be a list of strings, got {shown(follow_up)[:80]}")
    if not len(answers) == len(replies) == len(follow_up) > 0:
        raise ValueError(
            f"answers, replies and follow_up must be non-empty and of one length, got "
            f"{len(answers)}, {len(replies)}, {len(follow_up)}"
        )
    for i, (a, r) in enumerate(zip(answers, replies, strict=True)):
        if len(a) != len(r) or len(a) < 2:
            raise ValueError(f"conversation {i}: {len(a)} answers but {len(r)} replies (two turns needed)")
    hits = [[x.strip() == y.strip() for x, y in zip(a, r, strict=True)] for a, r in zip(answers, replies, strict=True)]
    repeat = [r for r, kind in zip(replies, follow_up, strict=True) if kind == "repeat"]
    return {
        "first_turn": sum(h[0] for h in hits) / len(hits),
        "second_turn": sum(h[1] for h in hits) / len(hits),
        "accuracy": sum(map(sum, hits)) / sum(map(len, hits)),
        "consistency": sum(r[0].strip() == r[1].strip() for r in repeat) / len(repeat) if repeat else float("nan"),
        "n_repeat": len(repeat),
    }
