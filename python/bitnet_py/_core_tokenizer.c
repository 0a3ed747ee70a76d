/* bitnet_py._core.Tokenizer and StreamDecoder: the library's tokenizers
 * (bn_tokenizer) for Python.
 *
 *   tok = Tokenizer(path)              any of the formats below, by content
 *   Tokenizer.load(path)               same
 *   Tokenizer.load_tiktoken(path) / load_spm(path) / load_hf_json(path)
 *   Tokenizer.from_gguf(path_or_reader)
 *   Tokenizer.from_model(model)        the vocabulary inside a loaded Model
 *   tok.encode(text, bos=False, eos=False, allowed_special=(),
 *              disallowed_special="all") -> list[int]
 *       tiktoken's semantics: special-token text that is disallowed raises
 *       TokenizerError (a ValueError); allowed_special="all" or a collection
 *       of special-token strings; disallowed_special="all" (all that are not
 *       allowed) or a collection (() means none: such text is plain text).
 *       text may be str (lone surrogates become U+FFFD, as tiktoken does) or
 *       bytes (invalid UTF-8 is kept as raw bytes).
 *   tok.decode(ids, skip_special=False, errors="replace") -> str
 *   tok.decode_bytes(ids, skip_special=False) -> bytes
 *   tok.token_bytes(id) -> bytes, tok.token_text(id) -> bytes (stored form)
 *   tok.encode_chat(messages, add_generation_prompt=True, *, template=False) -> list[int]
 *       the original BitNet ChatFormat; messages are dicts or objects with
 *       role and content
 *   tok.special_id(text) -> int | None, tok.is_special(id) -> bool
 *   tok.n_vocab, bos_id, eos_id, eot_id, pad_id, kind ("bpe" / "spm")
 *   tok.stream_decoder(skip_special=False) -> StreamDecoder
 *   StreamDecoder.push(id) -> str, flush() -> str: never a partial character
 *
 * A Tokenizer is immutable, so encode/decode release the GIL (for inputs
 * long enough to matter) and may run in parallel threads. */
#include "_core.h"

#include <string.h>

typedef struct BnpyTokenizer {
    PyObject_HEAD bn_tokenizer *owned; /* freed in dealloc */
    const bn_tokenizer *tok;
    PyObject *model; /* Model we borrow from (pinned), or NULL */
} BnpyTokenizer;

typedef struct BnpyStreamDecoder {
    PyObject_HEAD bn_detok *d;
    PyObject *tokenizer; /* keeps the tokenizer alive */
} BnpyStreamDecoder;

static PyTypeObject BnpyTokenizer_Type;
static PyTypeObject BnpyStreamDecoder_Type;

/* Inputs at least this long are processed without the GIL. */
#define NOGIL_BYTES 4096

static void Tokenizer_dealloc(BnpyTokenizer *self) {
    bn_tokenizer_free(self->owned);
    if (self->model) {
        bnpy_model_release(self->model);
        Py_DECREF(self->model);
    }
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static int ready(BnpyTokenizer *self) {
    if (!self->tok) {
        PyErr_SetString(PyExc_ValueError, "Tokenizer is not initialized");
        return -1;
    }
    return 0;
}

typedef bn_status (*load_fn)(const char *, bn_tokenizer **, bn_error *);

/* Load into self from a path-like. */
static int load_into(BnpyTokenizer *self, PyObject *path, load_fn fn) {
    PyObject *bytes = NULL;
    if (!PyUnicode_FSConverter(path, &bytes)) return -1;
    const char *p = PyBytes_AS_STRING(bytes);
    bn_tokenizer *t = NULL;
    bn_error err;
    bn_status st;
    Py_BEGIN_ALLOW_THREADS st = fn(p, &t, &err);
    Py_END_ALLOW_THREADS Py_DECREF(bytes);
    if (st != BN_OK) {
        bnpy_raise(st, &err);
        return -1;
    }
    self->owned = t;
    self->tok = t;
    return 0;
}

static int Tokenizer_init(BnpyTokenizer *self, PyObject *args, PyObject *kwds) {
    static char *kwlist[] = {"path", NULL};
    PyObject *path;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "O:Tokenizer", kwlist, &path)) return -1;
    /* Other threads (encode without the GIL) and stream decoders may use the
     * current tokenizer: it is never replaced. */
    if (self->tok) {
        PyErr_SetString(PyExc_TypeError, "Tokenizer is already initialized");
        return -1;
    }
    return load_into(self, path, bn_tokenizer_load);
}

static PyObject *new_loaded(PyTypeObject *type, PyObject *path, load_fn fn) {
    BnpyTokenizer *self = (BnpyTokenizer *)type->tp_alloc(type, 0);
    if (!self) return NULL;
    if (load_into(self, path, fn) < 0) {
        Py_DECREF(self);
        return NULL;
    }
    return (PyObject *)self;
}

static PyObject *Tokenizer_load(PyObject *cls, PyObject *path) {
    return new_loaded((PyTypeObject *)cls, path, bn_tokenizer_load);
}
static PyObject *Tokenizer_load_tiktoken(PyObject *cls, PyObject *path) {
    return new_loaded((PyTypeObject *)cls, path, bn_tokenizer_load_tiktoken);
}
static PyObject *Tokenizer_load_spm(PyObject *cls, PyObject *path) {
    return new_loaded((PyTypeObject *)cls, path, bn_tokenizer_load_spm);
}
static PyObject *Tokenizer_load_hf_json(PyObject *cls, PyObject *path) {
    return new_loaded((PyTypeObject *)cls, path, bn_tokenizer_load_hf_json);
}

static PyObject *Tokenizer_from_gguf(PyObject *cls, PyObject *arg) {
    if (PyObject_TypeCheck(arg, &BnpyGGUFReader_Type)) {
        const bn_gguf *g = bnpy_gguf_get(arg);
        if (!g) return NULL;
        bn_tokenizer *t = NULL;
        bn_error err;
        bn_status st = bn_tokenizer_from_gguf(g, &t, &err);
        if (st != BN_OK) return bnpy_raise(st, &err);
        BnpyTokenizer *self =
            (BnpyTokenizer *)((PyTypeObject *)cls)->tp_alloc((PyTypeObject *)cls, 0);
        if (!self) {
            bn_tokenizer_free(t);
            return NULL;
        }
        self->owned = t;
        self->tok = t;
        return (PyObject *)self;
    }
    return new_loaded((PyTypeObject *)cls, arg, bn_tokenizer_load);
}

static PyObject *Tokenizer_from_model(PyObject *cls, PyObject *model) {
    const bn_model *m = bnpy_model_acquire(model);
    if (!m) return NULL;
    const bn_tokenizer *t = bn_model_tokenizer(m);
    if (!t) {
        bnpy_model_release(model);
        return bnpy_raise_fmt(BN_ERR_NOT_FOUND, "the model file has no tokenizer");
    }
    BnpyTokenizer *self = (BnpyTokenizer *)((PyTypeObject *)cls)->tp_alloc((PyTypeObject *)cls, 0);
    if (!self) {
        bnpy_model_release(model);
        return NULL;
    }
    Py_INCREF(model);
    self->model = model;
    self->tok = t;
    return (PyObject *)self;
}

/* ------------------------------------------------------------------------ */
/* encode                                                                    */
/* ------------------------------------------------------------------------ */

/* A list of special-token names from "all" / a collection of str. *all is
 * set for "all". names[] point into the str objects held by *keep. */
static int special_arg(PyObject *obj, const char *what, int *all, const char ***names, size_t *n,
                       PyObject **keep) {
    *all = 0;
    *names = NULL;
    *n = 0;
    *keep = NULL;
    if (PyUnicode_Check(obj)) {
        if (PyUnicode_CompareWithASCIIString(obj, "all") == 0) {
            *all = 1;
            return 0;
        }
        PyErr_Format(PyExc_ValueError, "%s must be \"all\" or a collection of str", what);
        return -1;
    }
    PyObject *seq = PySequence_Fast(obj, "special tokens must be \"all\" or a collection of str");
    if (!seq) return -1;
    Py_ssize_t len = PySequence_Fast_GET_SIZE(seq);
    const char **arr = PyMem_Malloc(((size_t)len + 1) * sizeof(char *));
    if (!arr) {
        Py_DECREF(seq);
        PyErr_NoMemory();
        return -1;
    }
    for (Py_ssize_t i = 0; i < len; i++) {
        PyObject *s = PySequence_Fast_GET_ITEM(seq, i);
        if (!PyUnicode_Check(s)) {
            PyErr_Format(PyExc_TypeError, "%s: items must be str, not %.100s", what,
                         Py_TYPE(s)->tp_name);
            PyMem_Free(arr);
            Py_DECREF(seq);
            return -1;
        }
        arr[i] = PyUnicode_AsUTF8(s);
        if (!arr[i]) {
            PyMem_Free(arr);
            Py_DECREF(seq);
            return -1;
        }
    }
    *names = arr;
    *n = (size_t)len;
    *keep = seq;
    return 0;
}

/* UTF-8 of a str as tiktoken sees it: lone surrogates become U+FFFD. Returns
 * a new reference to the object owning the buffer. */
static PyObject *text_utf8(PyObject *text, const char **s, Py_ssize_t *n) {
    if (PyBytes_Check(text)) {
        Py_INCREF(text);
        *s = PyBytes_AS_STRING(text);
        *n = PyBytes_GET_SIZE(text);
        return text;
    }
    if (!PyUnicode_Check(text)) {
        PyErr_Format(PyExc_TypeError, "text must be str or bytes, not %.100s",
                     Py_TYPE(text)->tp_name);
        return NULL;
    }
    *s = PyUnicode_AsUTF8AndSize(text, n);
    if (*s) {
        Py_INCREF(text);
        return text;
    }
    if (!PyErr_ExceptionMatches(PyExc_UnicodeEncodeError)) return NULL;
    PyErr_Clear();
    PyObject *u16 = PyUnicode_AsEncodedString(text, "utf-16", "surrogatepass");
    if (!u16) return NULL;
    PyObject *fixed =
        PyUnicode_Decode(PyBytes_AS_STRING(u16), PyBytes_GET_SIZE(u16), "utf-16", "replace");
    Py_DECREF(u16);
    if (!fixed) return NULL;
    *s = PyUnicode_AsUTF8AndSize(fixed, n);
    if (!*s) {
        Py_DECREF(fixed);
        return NULL;
    }
    return fixed;
}

static PyObject *ids_to_list(const int32_t *ids, size_t n) {
    PyObject *list = PyList_New((Py_ssize_t)n);
    if (!list) return NULL;
    for (size_t i = 0; i < n; i++) {
        PyObject *v = PyLong_FromLong(ids[i]);
        if (!v) {
            Py_DECREF(list);
            return NULL;
        }
        PyList_SET_ITEM(list, (Py_ssize_t)i, v);
    }
    return list;
}

static PyObject *Tokenizer_encode(BnpyTokenizer *self, PyObject *args, PyObject *kwds) {
    static char *kwlist[] = {"text", "bos", "eos", "allowed_special", "disallowed_special", NULL};
    PyObject *text, *allowed = NULL, *disallowed = NULL;
    int bos = 0, eos = 0;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "O|$ppOO:encode", kwlist, &text, &bos, &eos,
                                     &allowed, &disallowed))
        return NULL;
    if (ready(self) < 0) return NULL;
    bn_encode_opts o = {0};
    o.add_bos = bos;
    o.add_eos = eos;
    PyObject *keep_a = NULL, *keep_d = NULL, *owner = NULL, *result = NULL;
    const char **an = NULL, **dn = NULL;
    int32_t *ids = NULL;
    if (allowed && allowed != Py_None) {
        int all;
        if (special_arg(allowed, "allowed_special", &all, &an, &o.n_allowed, &keep_a) < 0) goto out;
        o.allow_all_special = all;
        o.allowed_special = an;
    }
    if (disallowed && disallowed != Py_None) {
        int all;
        size_t nd;
        if (special_arg(disallowed, "disallowed_special", &all, &dn, &nd, &keep_d) < 0) goto out;
        if (!all) {
            if (nd == 0) o.disallow_none = 1;
            o.disallowed_special = dn;
            o.n_disallowed = nd;
        }
    }
    const char *s;
    Py_ssize_t n;
    owner = text_utf8(text, &s, &n);
    if (!owner) goto out;
    /* Usually one id covers at least one byte, but SentencePiece's dummy
     * prefix (U+2581, three bytes when byte-encoded) can add ids: on
     * BN_ERR_RANGE the library reports the size needed, and we retry once. */
    size_t cap = (size_t)n + 8;
    size_t got = 0;
    bn_error err;
    bn_status st = BN_ERR_RANGE;
    for (int attempt = 0; attempt < 2 && st == BN_ERR_RANGE; attempt++) {
        if (attempt > 0) {
            if (got <= cap) break; /* a real range error, not a short buffer */
            cap = got;
            PyMem_Free(ids);
        }
        ids = PyMem_Malloc(cap * sizeof(int32_t));
        if (!ids) {
            PyErr_NoMemory();
            goto out;
        }
        got = 0;
        if (n >= NOGIL_BYTES) {
            Py_BEGIN_ALLOW_THREADS st =
                bn_tokenize(self->tok, s, (size_t)n, &o, ids, cap, &got, &err);
            Py_END_ALLOW_THREADS
        } else {
            st = bn_tokenize(self->tok, s, (size_t)n, &o, ids, cap, &got, &err);
        }
    }
    if (st != BN_OK) {
        bnpy_raise(st, &err);
        goto out;
    }
    result = ids_to_list(ids, got);
out:
    PyMem_Free(ids);
    PyMem_Free(an);
    PyMem_Free(dn);
    Py_XDECREF(keep_a);
    Py_XDECREF(keep_d);
    Py_XDECREF(owner);
    return result;
}

/* ------------------------------------------------------------------------ */
/* decode                                                                    */
/* ------------------------------------------------------------------------ */

/* Decoded bytes into a PyMem buffer. */
static int decode_raw(BnpyTokenizer *self, PyObject *ids_obj, int skip, char **out, size_t *len) {
    int32_t *ids;
    Py_ssize_t n;
    if (bnpy_get_i32_seq(ids_obj, "ids", &ids, &n) < 0) return -1;
    bn_error err;
    size_t need = 0;
    bn_status st;
    Py_BEGIN_ALLOW_THREADS st =
        bn_detokenize(self->tok, ids, (size_t)n, skip, NULL, 0, &need, &err);
    Py_END_ALLOW_THREADS if (st != BN_OK && st != BN_ERR_RANGE) {
        PyMem_Free(ids);
        bnpy_raise(st, &err);
        return -1;
    }
    char *buf = PyMem_Malloc(need + 1);
    if (!buf) {
        PyMem_Free(ids);
        PyErr_NoMemory();
        return -1;
    }
    Py_BEGIN_ALLOW_THREADS st =
        bn_detokenize(self->tok, ids, (size_t)n, skip, buf, need, len, &err);
    Py_END_ALLOW_THREADS PyMem_Free(ids);
    if (st != BN_OK) {
        PyMem_Free(buf);
        bnpy_raise(st, &err);
        return -1;
    }
    *out = buf;
    return 0;
}

static PyObject *Tokenizer_decode(BnpyTokenizer *self, PyObject *args, PyObject *kwds) {
    static char *kwlist[] = {"ids", "skip_special", "errors", NULL};
    PyObject *ids;
    int skip = 0;
    const char *errors = "replace";
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "O|$ps:decode", kwlist, &ids, &skip, &errors))
        return NULL;
    if (ready(self) < 0) return NULL;
    char *buf;
    size_t len;
    if (decode_raw(self, ids, skip, &buf, &len) < 0) return NULL;
    PyObject *r = PyUnicode_DecodeUTF8(buf, (Py_ssize_t)len, errors);
    PyMem_Free(buf);
    return r;
}

static PyObject *Tokenizer_decode_bytes(BnpyTokenizer *self, PyObject *args, PyObject *kwds) {
    static char *kwlist[] = {"ids", "skip_special", NULL};
    PyObject *ids;
    int skip = 0;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "O|$p:decode_bytes", kwlist, &ids, &skip))
        return NULL;
    if (ready(self) < 0) return NULL;
    char *buf;
    size_t len;
    if (decode_raw(self, ids, skip, &buf, &len) < 0) return NULL;
    PyObject *r = PyBytes_FromStringAndSize(buf, (Py_ssize_t)len);
    PyMem_Free(buf);
    return r;
}

static int id_arg(PyObject *arg, int32_t *id) {
    long v = PyLong_AsLong(arg);
    if (v == -1 && PyErr_Occurred()) return -1;
    if (v < INT32_MIN || v > INT32_MAX) {
        bnpy_raise_fmt(BN_ERR_RANGE, "token id %ld out of range", v);
        return -1;
    }
    *id = (int32_t)v;
    return 0;
}

static PyObject *Tokenizer_token_bytes(BnpyTokenizer *self, PyObject *arg) {
    if (ready(self) < 0) return NULL;
    int32_t id;
    if (id_arg(arg, &id) < 0) return NULL;
    if (id < 0 || id >= bn_tokenizer_n_vocab(self->tok))
        return bnpy_raise_fmt(BN_ERR_RANGE, "token id %ld out of range [0, %ld)", (long)id,
                              (long)bn_tokenizer_n_vocab(self->tok));
    size_t need = 0;
    bn_error err;
    bn_status st = bn_token_to_bytes(self->tok, id, NULL, 0, &need, &err);
    if (st != BN_OK && st != BN_ERR_RANGE) return bnpy_raise(st, &err);
    PyObject *b = PyBytes_FromStringAndSize(NULL, (Py_ssize_t)need);
    if (!b) return NULL;
    st = bn_token_to_bytes(self->tok, id, PyBytes_AS_STRING(b), need, &need, &err);
    if (st != BN_OK) {
        Py_DECREF(b);
        return bnpy_raise(st, &err);
    }
    return b;
}

static PyObject *Tokenizer_token_text(BnpyTokenizer *self, PyObject *arg) {
    if (ready(self) < 0) return NULL;
    int32_t id;
    if (id_arg(arg, &id) < 0) return NULL;
    const char *s;
    size_t len;
    bn_error err;
    bn_status st = bn_tokenizer_token_text(self->tok, id, &s, &len, &err);
    if (st != BN_OK) return bnpy_raise(st, &err);
    return PyBytes_FromStringAndSize(s, (Py_ssize_t)len);
}

static PyObject *Tokenizer_special_id(BnpyTokenizer *self, PyObject *arg) {
    if (ready(self) < 0) return NULL;
    if (!PyUnicode_Check(arg)) {
        PyErr_SetString(PyExc_TypeError, "special_id: text must be str");
        return NULL;
    }
    const char *s = PyUnicode_AsUTF8(arg);
    if (!s) return NULL;
    int32_t id = bn_tokenizer_special_id(self->tok, s);
    if (id < 0) Py_RETURN_NONE;
    return PyLong_FromLong(id);
}

static PyObject *Tokenizer_is_special(BnpyTokenizer *self, PyObject *arg) {
    if (ready(self) < 0) return NULL;
    long v = PyLong_AsLong(arg);
    if (v == -1 && PyErr_Occurred()) return NULL;
    if (v < 0 || v > INT32_MAX) Py_RETURN_FALSE;
    return PyBool_FromLong(bn_tokenizer_is_special(self->tok, (int32_t)v));
}

/* ------------------------------------------------------------------------ */
/* chat                                                                      */
/* ------------------------------------------------------------------------ */

static PyObject *msg_field(PyObject *m, const char *name) {
    if (PyDict_Check(m)) {
        PyObject *v = PyDict_GetItemString(m, name); /* borrowed */
        if (!v) {
            PyErr_Format(PyExc_KeyError, "chat message has no '%s'", name);
            return NULL;
        }
        Py_INCREF(v);
        return v;
    }
    return PyObject_GetAttrString(m, name);
}

static PyObject *Tokenizer_encode_chat(BnpyTokenizer *self, PyObject *args, PyObject *kwds) {
    static char *kwlist[] = {"messages", "add_generation_prompt", "template", NULL};
    PyObject *msgs;
    int gen = 1, tmpl = 0;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "O|p$p:encode_chat", kwlist, &msgs, &gen, &tmpl))
        return NULL;
    if (ready(self) < 0) return NULL;
    PyObject *seq = PySequence_Fast(msgs, "messages must be a sequence");
    if (!seq) return NULL;
    Py_ssize_t n = PySequence_Fast_GET_SIZE(seq);
    bn_chat_message *m = PyMem_Calloc((size_t)n + 1, sizeof *m);
    PyObject *keep = PyList_New(0);
    PyObject *result = NULL;
    int32_t *ids = NULL;
    if (!m || !keep) {
        PyErr_NoMemory();
        goto out;
    }
    size_t total = 16;
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *item = PySequence_Fast_GET_ITEM(seq, i);
        PyObject *role = msg_field(item, "role");
        if (!role) goto out;
        PyObject *content = msg_field(item, "content");
        if (!content) {
            Py_DECREF(role);
            goto out;
        }
        int bad = PyList_Append(keep, role) < 0 || PyList_Append(keep, content) < 0;
        Py_DECREF(role);
        Py_DECREF(content);
        if (bad) goto out;
        if (!PyUnicode_Check(role) || !PyUnicode_Check(content)) {
            PyErr_SetString(PyExc_TypeError, "chat message role and content must be str");
            goto out;
        }
        Py_ssize_t cl;
        m[i].role = PyUnicode_AsUTF8(role);
        m[i].content = PyUnicode_AsUTF8AndSize(content, &cl);
        if (!m[i].role || !m[i].content) goto out;
        if (strlen(m[i].content) != (size_t)cl) {
            PyErr_SetString(PyExc_ValueError, "chat message content contains a NUL character");
            goto out;
        }
        total += (size_t)cl + 16;
    }
    ids = PyMem_Malloc(total * sizeof(int32_t));
    if (!ids) {
        PyErr_NoMemory();
        goto out;
    }
    size_t got;
    bn_error err;
    bn_status st = (tmpl ? bn_chat_encode_template : bn_chat_encode_dialog)(
        self->tok, m, (size_t)n, gen, ids, total, &got, &err);
    if (st != BN_OK) {
        bnpy_raise(st, &err);
        goto out;
    }
    result = ids_to_list(ids, got);
out:
    PyMem_Free(ids);
    PyMem_Free(m);
    Py_XDECREF(keep);
    Py_DECREF(seq);
    return result;
}

/* ------------------------------------------------------------------------ */
/* StreamDecoder                                                             */
/* ------------------------------------------------------------------------ */

static PyObject *Tokenizer_stream_decoder(BnpyTokenizer *self, PyObject *args, PyObject *kwds) {
    static char *kwlist[] = {"skip_special", NULL};
    int skip = 0;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "|p:stream_decoder", kwlist, &skip)) return NULL;
    if (ready(self) < 0) return NULL;
    BnpyStreamDecoder *d = PyObject_New(BnpyStreamDecoder, &BnpyStreamDecoder_Type);
    if (!d) return NULL;
    d->d = NULL;
    Py_INCREF(self);
    d->tokenizer = (PyObject *)self;
    bn_error err;
    bn_status st = bn_detok_new(self->tok, skip, &d->d, &err);
    if (st != BN_OK) {
        Py_DECREF(d);
        return bnpy_raise(st, &err);
    }
    return (PyObject *)d;
}

static void StreamDecoder_dealloc(BnpyStreamDecoder *self) {
    bn_detok_free(self->d);
    Py_XDECREF(self->tokenizer);
    PyObject_Free(self);
}

static PyObject *StreamDecoder_push(BnpyStreamDecoder *self, PyObject *arg) {
    int32_t id;
    if (id_arg(arg, &id) < 0) return NULL;
    const char *s;
    size_t len;
    bn_error err;
    bn_status st = bn_detok_push(self->d, id, &s, &len, &err);
    if (st != BN_OK) return bnpy_raise(st, &err);
    return PyUnicode_DecodeUTF8(s, (Py_ssize_t)len, "strict");
}

static PyObject *StreamDecoder_flush(BnpyStreamDecoder *self, PyObject *noargs) {
    const char *s;
    size_t len;
    bn_error err;
    bn_status st = bn_detok_flush(self->d, &s, &len, &err);
    if (st != BN_OK) return bnpy_raise(st, &err);
    return PyUnicode_DecodeUTF8(s, (Py_ssize_t)len, "strict");
}

static PyMethodDef StreamDecoder_methods[] = {
    {"push", (PyCFunction)StreamDecoder_push, METH_O,
     "push(id) -> str: the text that is now complete (never a partial character)."},
    {"flush", (PyCFunction)StreamDecoder_flush, METH_NOARGS,
     "flush() -> str: what is held back (an incomplete tail becomes U+FFFD); starts over."},
    {NULL, NULL, 0, NULL}};

static PyTypeObject BnpyStreamDecoder_Type = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "bitnet_py._core.StreamDecoder",
    .tp_basicsize = sizeof(BnpyStreamDecoder),
    .tp_dealloc = (destructor)StreamDecoder_dealloc,
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc =
        "Incremental decoder from Tokenizer.stream_decoder(): push(id) -> str, flush() -> str.",
    .tp_methods = StreamDecoder_methods,
};

/* ------------------------------------------------------------------------ */
/* Type                                                                      */
/* ------------------------------------------------------------------------ */

static PyObject *get_i32(BnpyTokenizer *self, int32_t (*f)(const bn_tokenizer *)) {
    if (ready(self) < 0) return NULL;
    int32_t v = f(self->tok);
    if (v < 0) Py_RETURN_NONE;
    return PyLong_FromLong(v);
}
static PyObject *Tokenizer_n_vocab(BnpyTokenizer *self, void *c) {
    return get_i32(self, bn_tokenizer_n_vocab);
}
static PyObject *Tokenizer_bos(BnpyTokenizer *self, void *c) {
    return get_i32(self, bn_tokenizer_bos);
}
static PyObject *Tokenizer_eos(BnpyTokenizer *self, void *c) {
    return get_i32(self, bn_tokenizer_eos);
}
static PyObject *Tokenizer_eot(BnpyTokenizer *self, void *c) {
    return get_i32(self, bn_tokenizer_eot);
}
static PyObject *Tokenizer_pad(BnpyTokenizer *self, void *c) {
    return get_i32(self, bn_tokenizer_pad);
}
static PyObject *Tokenizer_kind(BnpyTokenizer *self, void *c) {
    if (ready(self) < 0) return NULL;
    return PyUnicode_FromString(bn_tokenizer_get_kind(self->tok) == BN_TOKENIZER_SPM ? "spm"
                                                                                     : "bpe");
}

static PyObject *Tokenizer_repr(BnpyTokenizer *self) {
    if (!self->tok) return PyUnicode_FromString("<Tokenizer (uninitialized)>");
    return PyUnicode_FromFormat("<Tokenizer %s n_vocab=%d>",
                                bn_tokenizer_get_kind(self->tok) == BN_TOKENIZER_SPM ? "spm"
                                                                                     : "bpe",
                                (int)bn_tokenizer_n_vocab(self->tok));
}

static PyGetSetDef Tokenizer_getset[] = {
    {"n_vocab", (getter)Tokenizer_n_vocab, NULL, "Number of token ids.", NULL},
    {"bos_id", (getter)Tokenizer_bos, NULL, "Beginning-of-text id (None when absent).", NULL},
    {"eos_id", (getter)Tokenizer_eos, NULL, "End-of-text id (None when absent).", NULL},
    {"eot_id", (getter)Tokenizer_eot, NULL, "End-of-turn id (<|eot_id|>, or eos).", NULL},
    {"pad_id", (getter)Tokenizer_pad, NULL, "Padding id (None when absent).", NULL},
    {"kind", (getter)Tokenizer_kind, NULL, "\"bpe\" (byte-level BPE) or \"spm\" (SentencePiece).",
     NULL},
    {NULL, NULL, NULL, NULL, NULL}};

static PyMethodDef Tokenizer_methods[] = {
    {"load", (PyCFunction)Tokenizer_load, METH_O | METH_CLASS,
     "load(path): a tiktoken rank file, SentencePiece model, tokenizer.json or GGUF (by content)."},
    {"load_tiktoken", (PyCFunction)Tokenizer_load_tiktoken, METH_O | METH_CLASS,
     "load_tiktoken(path): Llama-3 tiktoken rank file with its 256 special tokens."},
    {"load_spm", (PyCFunction)Tokenizer_load_spm, METH_O | METH_CLASS,
     "load_spm(path): SentencePiece BPE tokenizer.model."},
    {"load_hf_json", (PyCFunction)Tokenizer_load_hf_json, METH_O | METH_CLASS,
     "load_hf_json(path): Hugging Face tokenizer.json (byte-level BPE)."},
    {"from_gguf", (PyCFunction)Tokenizer_from_gguf, METH_O | METH_CLASS,
     "from_gguf(path_or_reader): the vocabulary stored in a GGUF file."},
    {"from_model", (PyCFunction)Tokenizer_from_model, METH_O | METH_CLASS,
     "from_model(model): the vocabulary of a loaded Model (keeps the model alive)."},
    {"encode", (PyCFunction)(void (*)(void))Tokenizer_encode, METH_VARARGS | METH_KEYWORDS,
     "encode(text, *, bos=False, eos=False, allowed_special=(), disallowed_special=\"all\") -> "
     "list[int]"},
    {"decode", (PyCFunction)(void (*)(void))Tokenizer_decode, METH_VARARGS | METH_KEYWORDS,
     "decode(ids, *, skip_special=False, errors=\"replace\") -> str"},
    {"decode_bytes", (PyCFunction)(void (*)(void))Tokenizer_decode_bytes,
     METH_VARARGS | METH_KEYWORDS, "decode_bytes(ids, *, skip_special=False) -> bytes"},
    {"token_bytes", (PyCFunction)Tokenizer_token_bytes, METH_O,
     "token_bytes(id) -> bytes as the token appears in decoded text."},
    {"token_text", (PyCFunction)Tokenizer_token_text, METH_O,
     "token_text(id) -> bytes of the stored token (SentencePiece: the piece with U+2581)."},
    {"special_id", (PyCFunction)Tokenizer_special_id, METH_O,
     "special_id(text) -> int | None: id of a special token by its text."},
    {"is_special", (PyCFunction)Tokenizer_is_special, METH_O, "is_special(id) -> bool"},
    {"encode_chat", (PyCFunction)(void (*)(void))Tokenizer_encode_chat,
     METH_VARARGS | METH_KEYWORDS,
     "encode_chat(messages, add_generation_prompt=True, *, template=False) -> list[int]: the "
     "original BitNet ChatFormat (bos, 'Role: ' headers, content.strip(), <|eot_id|>); with "
     "template=True the official GGUF's chat template (header and content as one text)."},
    {"stream_decoder", (PyCFunction)(void (*)(void))Tokenizer_stream_decoder,
     METH_VARARGS | METH_KEYWORDS, "stream_decoder(skip_special=False) -> StreamDecoder"},
    {NULL, NULL, 0, NULL}};

static PyTypeObject BnpyTokenizer_Type = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "bitnet_py._core.Tokenizer",
    .tp_basicsize = sizeof(BnpyTokenizer),
    .tp_dealloc = (destructor)Tokenizer_dealloc,
    .tp_repr = (reprfunc)Tokenizer_repr,
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE,
    .tp_doc = "Tokenizer(path): Llama-3 BPE or SentencePiece tokenizer of libbitnet.",
    .tp_methods = Tokenizer_methods,
    .tp_getset = Tokenizer_getset,
    .tp_init = (initproc)Tokenizer_init,
    .tp_new = PyType_GenericNew,
};

int bnpy_init_tokenizer(PyObject *m) {
    if (PyType_Ready(&BnpyTokenizer_Type) < 0 || PyType_Ready(&BnpyStreamDecoder_Type) < 0)
        return -1;
    Py_INCREF(&BnpyTokenizer_Type);
    if (PyModule_AddObject(m, "Tokenizer", (PyObject *)&BnpyTokenizer_Type) < 0) {
        Py_DECREF(&BnpyTokenizer_Type);
        return -1;
    }
    Py_INCREF(&BnpyStreamDecoder_Type);
    if (PyModule_AddObject(m, "StreamDecoder", (PyObject *)&BnpyStreamDecoder_Type) < 0) {
        Py_DECREF(&BnpyStreamDecoder_Type);
        return -1;
    }
    return 0;
}
