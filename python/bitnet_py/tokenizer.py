"""The original's ``tokenizer.Tokenizer`` and ``ChatFormat`` over the C tokenizer.

``Tokenizer(model_path)`` reads a tiktoken ``tokenizer.model`` (the
original's Llama-3 file), a SentencePiece model, a Hugging Face
``tokenizer.json`` or a GGUF file's vocabulary.
"""

from __future__ import annotations

import os
from typing import Any, Collection, Literal, Mapping, Optional, Sequence, Union

from . import _core
from ._core import TokenizerError

Dialog = Sequence[Any]  # messages: dicts {"role", "content"} or Message objects

_LLAMA3_SPECIALS = ["<|begin_of_text|>", "<|end_of_text|>", "<|reserved_special_token_0|>",
                    "<|reserved_special_token_1|>", "<|reserved_special_token_2|>",
                    "<|reserved_special_token_3|>", "<|start_header_id|>", "<|end_header_id|>",
                    "<|reserved_special_token_4|>", "<|eot_id|>"]


def _role_content(message: Any) -> tuple[str, str]:
    if isinstance(message, Mapping):
        return str(message["role"]), str(message["content"])
    return str(message.role), str(message.content)


class Tokenizer:
    """Encode and decode text (the original's ``Tokenizer(model_path)``).

    Attributes: ``n_words``, ``bos_id``, ``eos_id``, ``eot_id``, ``pad_id``,
    ``stop_tokens``, ``special_tokens`` (name -> id)."""

    num_reserved_special_tokens = 256

    def __init__(self, model_path: Union[str, "os.PathLike[str]", _core.Tokenizer]) -> None:
        if isinstance(model_path, _core.Tokenizer):
            self._tok = model_path
            self.model_path: Optional[str] = None
        else:
            path = os.fspath(model_path)
            if not os.path.exists(path):
                err = _core.ModelNotFoundError(2, "Tokenizer model not found", path)
                err.hint = "pass the path of tokenizer.model (tiktoken or SentencePiece) or tokenizer.json"
                raise err
            if path.endswith(".gguf"):
                self._tok = _core.Tokenizer.from_gguf(path)
            else:
                self._tok = _core.Tokenizer(path)
            self.model_path = path
        t = self._tok
        self.n_words: int = t.n_vocab
        self.bos_id: int = t.bos_id if t.bos_id is not None else -1
        self.eos_id: int = t.eos_id if t.eos_id is not None else -1
        eot = t.special_id("<|eot_id|>")
        self.eot_id: int = eot if eot is not None else (t.eot_id if t.eot_id is not None else self.eos_id)
        self.pad_id: int = t.pad_id if t.pad_id is not None else self.n_words - 1
        self.special_tokens: dict[str, int] = self._specials()
        self.stop_tokens: set[int] = {i for i in (self.eos_id, self.eot_id) if i >= 0}

    def _specials(self) -> dict[str, int]:
        t = self._tok
        out: dict[str, int] = {}
        if t.special_id("<|begin_of_text|>") is not None:
            names = list(_LLAMA3_SPECIALS) + [f"<|reserved_special_token_{i}|>"
                                              for i in range(5, self.num_reserved_special_tokens - 5)]
            for name in names:
                sid = t.special_id(name)
                if sid is not None:
                    out[name] = sid
        else:
            for i in (t.bos_id, t.eos_id, t.pad_id):
                if i is not None:
                    out[t.token_text(i).decode("utf-8", "replace")] = i
        return out

    @property
    def core(self) -> _core.Tokenizer:
        """The underlying :class:`bitnet_py._core.Tokenizer`."""
        return self._tok

    def encode(self, s: str, *, bos: bool = True, eos: bool = False,
               allowed_special: Union[Literal["all"], Collection[str], None] = None,
               disallowed_special: Union[Literal["all"], Collection[str], None] = None) -> list[int]:
        """Token ids of ``s``. As the original: special-token text is encoded
        as plain text unless listed in ``allowed_special`` (or "all")."""
        if not isinstance(s, str):
            raise TokenizerError(f"encode() takes a str, not {type(s).__name__}")
        return self._tok.encode(s, bos=bool(bos), eos=bool(eos),
                                allowed_special=allowed_special or (),
                                disallowed_special=disallowed_special or ())

    def decode(self, t: Sequence[int]) -> str:
        """Text of ``t`` (special tokens included, as the original)."""
        return self._tok.decode(list(t))

    def __len__(self) -> int:
        return self.n_words

    def __repr__(self) -> str:
        return f"Tokenizer(path={self.model_path!r}, n_words={self.n_words})"


class ChatFormat:
    """The original's plain-text chat format: ``"User: "``/``"Assistant: "``/
    ``"System: "`` headers, each message ended by ``<|eot_id|>``."""

    _HEADERS = {"system": "System: ", "user": "User: ", "assistant": "Assistant: "}

    def __init__(self, tokenizer: Union[Tokenizer, str, "os.PathLike[str]"]) -> None:
        if not isinstance(tokenizer, Tokenizer):
            tokenizer = Tokenizer(tokenizer)
        self.tokenizer = tokenizer
        self.eot_id = tokenizer.eot_id

    def encode_header(self, message: Any) -> list[int]:
        role, _ = _role_content(message)
        head = self._HEADERS.get(role)
        if head is None:
            raise NotImplementedError(f"Role {role} not implemented.")
        return self.tokenizer.encode(head, bos=False, eos=False)

    def encode_message(self, message: Any, return_target: bool = False
                       ) -> tuple[list[int], Optional[list[int]]]:
        """``(tokens, targets)``; targets is None unless ``return_target``
        (assistant: -1 over the header, then the content ids; others all -1)."""
        role, content = _role_content(message)
        headers = self.encode_header(message)
        contents = self.tokenizer.encode(content.strip(), bos=False, eos=False) + [self.eot_id]
        tokens = headers + contents
        if not return_target:
            return tokens, None
        targets = [-1] * len(headers) + contents if role == "assistant" else [-1] * len(tokens)
        return tokens, targets

    def encode_dialog_prompt(self, dialog: Dialog, completion: bool = False,
                             return_target: bool = False) -> Any:
        """``[bos]`` + every message (+ the assistant header when
        ``completion``); ``(tokens, targets)`` when ``return_target``."""
        bos = self.tokenizer.bos_id
        tokens = [bos] if bos >= 0 else []
        targets = [-1] * len(tokens)
        for message in dialog:
            t, g = self.encode_message(message, return_target=True)
            tokens.extend(t)
            targets.extend(g or [])
        if completion:
            h = self.encode_header({"role": "assistant", "content": ""})
            tokens.extend(h)
            targets.extend([-1] * len(h))
        if return_target:
            return tokens, targets
        return tokens

    def decode(self, tokens: Sequence[int]) -> str:
        """Text of ``tokens`` without ``<|eot_id|>``."""
        return self.tokenizer.decode(tokens).replace("<|eot_id|>", "")


def as_core_tokenizer(tok: Any) -> Optional[_core.Tokenizer]:
    """The C tokenizer behind any of our tokenizer objects (or None)."""
    if tok is None:
        return None
    if isinstance(tok, _core.Tokenizer):
        return tok
    if isinstance(tok, ChatFormat):
        return tok.tokenizer.core
    if isinstance(tok, Tokenizer):
        return tok.core
    if isinstance(tok, (str, os.PathLike)):
        return Tokenizer(tok).core
    raise TokenizerError(f"not a tokenizer: {type(tok).__name__}")


def create_tokenizer(path: Union[str, "os.PathLike[str]"], chat_format: bool = False
                     ) -> Union[Tokenizer, ChatFormat]:
    """Load a tokenizer; ``chat_format=True`` wraps it in :class:`ChatFormat`."""
    tok = Tokenizer(path)
    return ChatFormat(tok) if chat_format else tok


__all__ = ["Tokenizer", "ChatFormat", "create_tokenizer", "as_core_tokenizer"]
