"""Lesson 6's exercises: your own data, a chat model, shipped.

References are the package's finished versions (``qlora_course.chat``, ``qlora_course.shipping``) and the
libraries (the tokenizer's own chat template; PEFT's per-row ``adapter_names``), which
``tests/test_chat.py`` and ``tests/test_shipping.py`` check against TRL, transformers' GGUF reader and PEFT.
Conversations are drawn at random from the course's generated chat data and then broken in one way or
several.
"""

from __future__ import annotations

from functools import cache

import torch

from qlora_grading import Exercise, Tolerance

from .. import chat, shipping
from ._answers import variant
from ._draw import choice, ints, sample

# --- conversations ----------------------------------------------------------------------------------


@cache
def _conversations() -> tuple:
    """A pool of generated conversations (two turns each), as plain lists of messages."""
    data = chat.make_chat_data(n_train=60, n_validation=1, n_test=1, n_test_unseen=1, seed=7)
    return tuple(tuple(dict(m) for m in row) for row in data["train"]["messages"])


def _conversation(g: torch.Generator, system: bool | None = None) -> list[dict]:
    """One generated conversation (a fresh copy), with a system message when ``system`` (drawn if None)."""
    pool = _conversations()
    messages = [dict(m) for m in pool[ints(g, 0, len(pool))]]
    if system is None:
        system = choice(g, [True, False])
    if system:
        messages.insert(0, {"role": "system", "content": choice(g, ["Answer in one word.", "You know the stories."])})
    return messages


def _broken(g: torch.Generator) -> list[tuple[str, object]]:
    """``(label, messages)``: a valid conversation, then one broken in each way the check names, and a few
    broken in two ways (the first failure in the exercise's order is the one to report)."""
    base = _conversation(g)
    n = len(base)
    k = ints(g, 0, n)

    def edit(fn):
        messages = [dict(m) for m in base]
        fn(messages)
        return messages

    cases = [
        ("valid", base),
        ("valid, no system message", _conversation(g, system=False)),
        ("empty list", []),
        ("not a list", choice(g, [None, "hello", {"role": "user", "content": "hi"}])),
        ("a message without content", edit(lambda m: m[k].pop("content"))),
        ("a message without role", edit(lambda m: m[k].pop("role"))),
        ("a message that is a string", edit(lambda m: m.__setitem__(k, "User: hi"))),
        ("content that is not a string", edit(lambda m: m[k].__setitem__("content", choice(g, [None, 3, ["a"]])))),
        ("unknown role", edit(lambda m: m[k].__setitem__("role", choice(g, ["bot", "human", "tool", "User"])))),
        ("empty content", edit(lambda m: m[k].__setitem__("content", choice(g, ["", "   ", "\n"])))),
        ("ends with the user", edit(lambda m: m.pop())),
        ("two user turns in a row", edit(lambda m: m.insert(len(m) - 1, {"role": "user", "content": "And?"}))),
        ("starts with the assistant", edit(lambda m: m.insert(0, {"role": "assistant", "content": "Hello."}))),
        ("a system message later", edit(lambda m: m.insert(len(m) - 2, {"role": "system", "content": "Be brief."}))),
        (
            "unknown role and empty content",
            edit(lambda m: (m[0].__setitem__("content", ""), m[-1].__setitem__("role", "bot"))),
        ),
        ("empty content and out of order", edit(lambda m: (m[-1].__setitem__("content", " "), m.pop(-2)))),
    ]
    return cases


def _check_conversation(answer, g):
    return {label: answer(messages) for label, messages in _broken(g)}


def _check_conversation_reference(messages):
    problem = chat.conversation_problem(messages)
    return None if problem is None else problem[0]


# --- the template by hand --------------------------------------------------------------------------


@cache
def course_tokenizer():
    """The course model's tokenizer, with its chat template."""
    from transformers import AutoTokenizer

    from ..models import course_model_path

    return AutoTokenizer.from_pretrained(course_model_path())


def _user_turn(g: torch.Generator) -> dict:
    return {"role": "user", "content": choice(g, ["And pony?", "What did you just say?", "Is Oslo a home?"])}


def _render_chat(answer, g):
    out = {}
    for k in range(3):
        messages = _conversation(g)
        out[f"conversation {k}"] = answer(messages, False)
        out[f"conversation {k}, the first turn, prompt"] = answer(
            messages[: 2 if messages[0]["role"] == "system" else 1], True
        )
        out[f"conversation {k}, the next question, prompt"] = answer(messages + [_user_turn(g)], True)
    return out


def _render_chat_reference(messages, add_generation_prompt):
    return course_tokenizer().apply_chat_template(messages, tokenize=False, add_generation_prompt=add_generation_prompt)


def _as_ids(value):
    """An answer's ids as a list of ints (a list, a tuple or a 1-D integer tensor); anything else unchanged."""
    if isinstance(value, torch.Tensor) and value.ndim == 1 and not value.is_floating_point():
        return [int(v) for v in value.tolist()]
    if isinstance(value, (list, tuple)) and all(isinstance(v, int) and not isinstance(v, bool) for v in value):
        return [int(v) for v in value]
    return value


def _assistant_only_labels(answer, g):
    out = {}
    for k in range(3):
        messages = _conversation(g)
        if k == 2:  # a third exchange: three answers to keep
            messages += [_user_turn(g), {"role": "assistant", "content": choice(g, ["food", "pet", "I do not know."])}]
        got = answer(course_tokenizer(), messages)
        if isinstance(got, dict):
            got = {key: _as_ids(got.get(key)) for key in ("input_ids", "labels")}
        out[f"conversation {k}"] = got
    return out


def _assistant_only_labels_reference(tokenizer, messages):
    return chat.assistant_labels(tokenizer, messages)


# An answer as the lesson's solution writes it (on the learner's ``render_chat``); wrong ones differ by a line.
_LABELS = """
def assistant_only_labels(tokenizer, messages):
    ids, labels, done = [], [], ''
    for i, m in enumerate(messages):
        if m['role'] == 'assistant':
            head = render_chat(messages[:i], add_generation_prompt=True)
            piece = tokenizer(head[len(done):], add_special_tokens=False)['input_ids']
            ids += piece
            labels += [-100] * len(piece)
            done = head
        text = render_chat(messages[: i + 1])
        piece = tokenizer(text[len(done):], add_special_tokens=False)['input_ids']
        ids += piece
        labels += piece if m['role'] == 'assistant' else [-100] * len(piece)
        done = text
    return {'input_ids': ids, 'labels': labels}
"""


# --- GGUF's rotary layout --------------------------------------------------------------------------


def _rope_pairs(answer, g):
    out = {}
    for k in range(3):
        heads, head_dim = choice(g, [1, 2, 4, 8]), 2 * ints(g, 1, 9)
        cols = ints(g, 1, 40)
        w = torch.randn(heads * head_dim, cols, generator=g)
        out[f"draw {k}: {heads} heads of {head_dim}, {cols} columns"] = answer(w.clone(), heads)
    w = torch.arange(8.0).reshape(8, 1)
    out["rows 0..7 as one head"] = answer(w.clone(), 1)
    out["rows 0..7 as two heads"] = answer(w.clone(), 2)
    return out


# --- one batch, several adapters -------------------------------------------------------------------


def two_adapter_model(g: torch.Generator, active: str):
    """A tiny random Llama (float32) with two LoRA adapters, ``"task"`` and ``"style"``, whose B is not zero,
    and ``active`` the active one (an answer must leave it so)."""
    from peft import LoraConfig, get_peft_model
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(ints(g, 0, 2**31 - 1))
    config = LlamaConfig(
        vocab_size=ints(g, 40, 120),
        hidden_size=32,
        intermediate_size=ints(g, 16, 80),
        num_hidden_layers=ints(g, 1, 3),
        num_attention_heads=4,
        num_key_value_heads=choice(g, [1, 2, 4]),
        max_position_embeddings=64,
    )
    model = get_peft_model(
        LlamaForCausalLM(config),
        LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"]),
        adapter_name="task",
    )
    model.add_adapter("style", LoraConfig(r=2, lora_alpha=4, target_modules=["k_proj", "down_proj"]))
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.normal_(0.0, 0.3, generator=g)
    model.set_adapter(active)
    model.eval()
    return model, config


def _route_by_hand(answer, g):
    out = {}
    for k in range(2):
        model, config = two_adapter_model(g, ["style", "task"][k])
        batch, seq = ints(g, 5, 9), ints(g, 3, 9)
        ids = torch.randint(0, config.vocab_size, (batch, seq), generator=g)
        kinds = sample(g, ["task", "style", shipping.BASE_ADAPTER], 3)
        # every kind of row, and one adapter's rows apart: a batch is not already grouped
        names = [kinds[0], kinds[1], kinds[0], kinds[2]] + [choice(g, kinds) for _ in range(batch - 4)]
        with torch.no_grad():
            out[f"batch {k}: {names}"] = answer(model, ids.clone(), list(names))
        out[f"batch {k}: the active adapter afterwards"] = model.active_adapter
    return out


def _route_by_hand_reference(model, input_ids, adapter_names):
    logits = shipping.routed_logits(model, input_ids, None, adapter_names)
    return logits


# check_conversation's answer, written with one loop per check: its wrong answers are edits of it
_CHECK = """
def check_conversation(messages):
    if not isinstance(messages, list) or not messages:
        return 'no messages'
    for m in messages:
        if not isinstance(m, dict) or not isinstance(m.get('role'), str) or not isinstance(m.get('content'), str):
            return 'message without role/content'
    for m in messages:
        if m['role'] not in ('system', 'user', 'assistant'):
            return 'unknown role'
    for m in messages:
        if not m['content'].strip():
            return 'empty content'
    roles = [m['role'] for m in messages]
    if roles[0] == 'system':
        roles = roles[1:]
    if roles != ['user', 'assistant'] * (len(roles) // 2) or len(roles) % 2:
        return 'roles out of order'
    return None
"""
_ORDER_TEST = "    if roles != ['user', 'assistant'] * (len(roles) // 2) or len(roles) % 2:"
_ORDER_CHECK = (
    "    roles = [m['role'] for m in messages]\n    if roles[0] == 'system':\n        roles = roles[1:]\n"
    + _ORDER_TEST
    + "\n        return 'roles out of order'\n"
)


EXERCISES = [
    Exercise(
        "check_conversation",
        points=2,
        probe=_check_conversation,
        reference=_check_conversation_reference,
        finished=(chat.conversation_problem, chat.validate_conversations),
        wrong=(
            variant(_CHECK, (_ORDER_CHECK, "")),  # never checks the order of the roles
            variant(_CHECK, ("if not m['content'].strip():", "if m['content'] == '':")),  # all-space content counts
            # checks each message completely before the next: the first broken message decides the reason
            variant(
                _CHECK,
                ("role/content'\n    for m in messages:\n", "role/content'\n"),
                ("unknown role'\n    for m in messages:\n", "unknown role'\n"),
            ),
            # a conversation may end with the user
            variant(
                _CHECK, (_ORDER_TEST, "    if any(r != ('user', 'assistant')[i % 2] for i, r in enumerate(roles)):")
            ),
        ),
        alternatives=(
            """
def check_conversation(messages):
    if type(messages) is not list or len(messages) == 0:
        return 'no messages'
    if not all(type(m) is dict and type(m.get('role')) is str and type(m.get('content')) is str for m in messages):
        return 'message without role/content'
    if any(m['role'] not in {'system', 'user', 'assistant'} for m in messages):
        return 'unknown role'
    if any(m['content'].strip() == '' for m in messages):
        return 'empty content'
    turns = [m['role'] for m in messages]
    start = 1 if turns[0] == 'system' else 0
    expected = ['user' if (i - start) % 2 == 0 else 'assistant' for i in range(start, len(turns))]
    if turns[start:] != expected or turns[-1] != 'assistant':
        return 'roles out of order'
    return None
""",
        ),
        cheats=(
            """
def check_conversation(messages):
    from qlora_course.chat import conversation_problem
    problem = conversation_problem(messages)
    return problem and problem[0]
""",
        ),
    ),
    Exercise(
        "render_chat",
        points=1,
        probe=_render_chat,
        reference=_render_chat_reference,
        finished=(
            "transformers.tokenization_utils_base.PreTrainedTokenizerBase.apply_chat_template",
            "jinja2.environment.Template.render",
            chat.rendered_turns,
        ),
        wrong=(
            # no end-of-turn token after the user
            """
def render_chat(messages, add_generation_prompt=False):
    text = '<s>'
    for m in messages:
        if m['role'] == 'assistant':
            text += 'Assistant: ' + m['content'] + '</s>'
        else:
            text += ('System: ' if m['role'] == 'system' else 'User: ') + m['content']
    return text + ('Assistant:' if add_generation_prompt else '')
""",
            # the generation prompt ends with a space: the answer's first token would be split
            """
def render_chat(messages, add_generation_prompt=False):
    text = '<s>'
    for m in messages:
        if m['role'] == 'assistant':
            text += 'Assistant: ' + m['content'] + '</s>'
        else:
            text += ('System: ' if m['role'] == 'system' else 'User: ') + m['content'] + '</s>'
    return text + ('Assistant: ' if add_generation_prompt else '')
""",
            # <s> before every turn
            """
def render_chat(messages, add_generation_prompt=False):
    text = ''
    for m in messages:
        if m['role'] == 'assistant':
            text += '<s>Assistant: ' + m['content'] + '</s>'
        else:
            text += '<s>' + ('System: ' if m['role'] == 'system' else 'User: ') + m['content'] + '</s>'
    return text + ('Assistant:' if add_generation_prompt else '')
""",
        ),
        alternatives=(
            """
def render_chat(messages, add_generation_prompt=False):
    headers = {'system': 'System: ', 'user': 'User: ', 'assistant': 'Assistant: '}
    parts = ['<s>'] + [headers[m['role']] + m['content'] + '</s>' for m in messages]
    if add_generation_prompt:
        parts.append('Assistant:')
    return ''.join(parts)
""",
        ),
        cheats=(
            """
def render_chat(messages, add_generation_prompt=False):
    from transformers import AutoTokenizer
    from qlora_course.models import course_model_path
    tok = AutoTokenizer.from_pretrained(course_model_path())
    return tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=add_generation_prompt)
""",
        ),
    ),
    Exercise(
        "assistant_only_labels",
        points=3,
        probe=_assistant_only_labels,
        reference=_assistant_only_labels_reference,
        finished=(
            chat.assistant_labels,
            chat.rendered_turns,
            "transformers.tokenization_utils_base.PreTrainedTokenizerBase.apply_chat_template",
        ),
        wrong=(
            # the end-of-turn token left untrained: the model never learns to stop
            variant(
                _LABELS,
                (
                    "labels += piece if m['role'] == 'assistant' else [-100] * len(piece)",
                    "labels += piece[:-1] + [-100] if m['role'] == 'assistant' else [-100] * len(piece)",
                ),
            ),
            # every token trained (no mask at all)
            variant(
                _LABELS,
                ("labels += [-100] * len(piece)\n", "labels += piece\n"),
                ("else [-100] * len(piece)", "else piece"),
            ),
            # the assistant header trained too
            variant(_LABELS, ("labels += [-100] * len(piece)\n", "labels += piece\n")),
            # the tokenizer's own <s> added in front of the template's
            variant(
                _LABELS,
                (
                    "return {'input_ids': ids, 'labels': labels}",
                    "return {'input_ids': [tokenizer.bos_token_id] + ids, 'labels': [-100] + labels}",
                ),
            ),
            # the whole conversation tokenized at once, but the answers found by tokenizing them alone
            """
def assistant_only_labels(tokenizer, messages):
    ids = tokenizer(render_chat(messages), add_special_tokens=False)['input_ids']
    answers = {t for m in messages if m['role'] == 'assistant'
               for t in tokenizer(m['content'] + '</s>', add_special_tokens=False)['input_ids']}
    return {'input_ids': ids, 'labels': [t if t in answers else -100 for t in ids]}
""",
        ),
        alternatives=(
            # tensors, and the text cut by character offsets
            """
def assistant_only_labels(tokenizer, messages):
    text = render_chat(messages)
    enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    spans, done = [], ''
    for i, m in enumerate(messages):
        if m['role'] == 'assistant':
            start = len(render_chat(messages[:i], True))
            spans.append((start, len(render_chat(messages[: i + 1]))))
    labels = [t if any(a <= s and e <= b for a, b in spans) else -100
              for t, (s, e) in zip(enc['input_ids'], enc['offset_mapping'])]
    return {'input_ids': torch.tensor(enc['input_ids']), 'labels': torch.tensor(labels)}
""",
        ),
        cheats=(
            """
def assistant_only_labels(tokenizer, messages):
    from qlora_course.chat import assistant_labels
    return assistant_labels(tokenizer, messages)
""",
            """
def assistant_only_labels(tokenizer, messages):
    enc = tokenizer.apply_chat_template(messages, return_dict=True, return_assistant_tokens_mask=True)
    ids = list(enc['input_ids'])
    return {'input_ids': ids, 'labels': [t if a else -100 for t, a in zip(ids, enc['assistant_masks'])]}
""",
        ),
    ),
    Exercise(
        "rope_pairs",
        points=2,
        probe=_rope_pairs,
        reference=shipping.permute_for_rope_pairs,
        tolerance=Tolerance(ulps=0),
        finished=(shipping.permute_for_rope_pairs, shipping.export_gguf),
        wrong=(
            # interleaves across the whole matrix, not within each head
            """
def rope_pairs(weight, n_heads):
    rows = weight.shape[0]
    return weight.reshape(2, rows // 2, -1).transpose(0, 1).reshape(weight.shape)
""",
            # the inverse permutation (llama.cpp's layout back to transformers')
            """
def rope_pairs(weight, n_heads):
    rows, cols = weight.shape
    d = rows // n_heads
    return weight.reshape(n_heads, d // 2, 2, cols).transpose(1, 2).reshape(rows, cols)
""",
            # unchanged
            """
def rope_pairs(weight, n_heads):
    return weight.clone()
""",
        ),
        alternatives=(
            """
def rope_pairs(weight, n_heads):
    d = weight.shape[0] // n_heads
    order = []
    for h in range(n_heads):
        for j in range(d // 2):
            order += [h * d + j, h * d + d // 2 + j]
    return weight[order]
""",
        ),
        cheats=(
            """
def rope_pairs(weight, n_heads):
    from qlora_course.shipping import permute_for_rope_pairs
    return permute_for_rope_pairs(weight, n_heads)
""",
        ),
    ),
    Exercise(
        "route_by_hand",
        points=2,
        probe=_route_by_hand,
        reference=_route_by_hand_reference,
        # one batch against its rows run group by group: matrix products of other sizes round differently
        tolerance={"": Tolerance(ulps=512), "afterwards": Tolerance()},
        finished=(
            shipping.routed_logits,
            shipping.routed_generate,
            "peft.tuners.lora.layer.LoraLayer._mixed_batch_forward",
        ),
        wrong=(
            # every row through the active adapter
            """
def route_by_hand(model, input_ids, adapter_names):
    return model(input_ids=input_ids).logits
""",
            # rows put back in the order of the groups, not their own
            """
def route_by_hand(model, input_ids, adapter_names):
    active = model.active_adapter
    parts = []
    for name in dict.fromkeys(adapter_names):
        rows = [i for i, n in enumerate(adapter_names) if n == name]
        if name == '__base__':
            with model.disable_adapter():
                parts.append(model(input_ids=input_ids[rows]).logits)
        else:
            model.set_adapter(name)
            parts.append(model(input_ids=input_ids[rows]).logits)
    model.set_adapter(active)
    return torch.cat(parts)
""",
            # the base rows through the active adapter
            """
def route_by_hand(model, input_ids, adapter_names):
    active = model.active_adapter
    out = None
    for name in set(adapter_names):
        rows = [i for i, n in enumerate(adapter_names) if n == name]
        model.set_adapter(active if name == '__base__' else name)
        logits = model(input_ids=input_ids[rows]).logits
        if out is None:
            out = logits.new_zeros(input_ids.shape + logits.shape[-1:])
        out[rows] = logits
    model.set_adapter(active)
    return out
""",
            # leaves the last adapter active
            """
def route_by_hand(model, input_ids, adapter_names):
    out = None
    for name in sorted(set(adapter_names)):
        rows = [i for i, n in enumerate(adapter_names) if n == name]
        if name == '__base__':
            with model.disable_adapter():
                logits = model(input_ids=input_ids[rows]).logits
        else:
            model.set_adapter(name)
            logits = model(input_ids=input_ids[rows]).logits
        if out is None:
            out = logits.new_zeros(input_ids.shape + logits.shape[-1:])
        out[rows] = logits
    return out
""",
        ),
        alternatives=(
            # one row at a time
            """
def route_by_hand(model, input_ids, adapter_names):
    active = model.active_adapter
    rows = []
    for i, name in enumerate(adapter_names):
        if name == '__base__':
            with model.disable_adapter():
                rows.append(model(input_ids=input_ids[i : i + 1]).logits)
        else:
            model.set_adapter(name)
            rows.append(model(input_ids=input_ids[i : i + 1]).logits)
    model.set_adapter(active)
    return torch.cat(rows)
""",
        ),
        cheats=(
            # PEFT's own routing
            """
def route_by_hand(model, input_ids, adapter_names):
    return model(input_ids=input_ids, adapter_names=list(adapter_names)).logits
""",
        ),
    ),
]
