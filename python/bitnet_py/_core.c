/*
 * bitnet_py._core: a thin, typed CPython shell over include/bitnet.h.
 *
 * - Every object owns its C handle and frees it in dealloc (or close()).
 * - Long C calls (model load, GGUF open/write, decode, quantize) run with the
 *   GIL released. Objects that are not thread-safe in C (Context, GGUFWriter)
 *   carry a `busy` flag, set and tested with the GIL held, so a second thread
 *   gets an exception instead of a data race.
 * - Lifetimes: a Context holds a strong reference to its Model and pins the
 *   model handle; memoryviews from GGUFReader.tensor_bytes keep the reader
 *   (and its mapping) alive, and close() refuses while they exist.
 * - No numpy C API: see _core.h.
 */
#include "_core.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

/* ======================================================================== */
/* Exceptions                                                               */
/* ======================================================================== */

PyObject *bnpy_BitNetError;
PyObject *bnpy_ModelNotFoundError;
PyObject *bnpy_ModelFormatError;
PyObject *bnpy_TokenizerError;
PyObject *bnpy_ConfigurationError;
PyObject *bnpy_InferenceError;
PyObject *bnpy_CancelledError;
PyObject *bnpy_BitNetIOError;
PyObject *bnpy_BitNetMemoryError;

static const char *status_hint(bn_status st) {
    switch (st) {
    case BN_ERR_NOT_FOUND: return "check the path; bitnet_py never downloads models";
    case BN_ERR_IO:
        return "check that the file exists and is readable (or, when writing, that the "
               "directory exists and the disk is not full)";
    case BN_ERR_FORMAT: return "the file is malformed or truncated: download or convert it again";
    case BN_ERR_UNSUPPORTED:
        return "the file is valid but uses an architecture, tensor type or layout this "
               "build cannot run (see bitnet_py._core.build_info())";
    case BN_ERR_INVALID_ARG: return "check the arguments (types, shapes, names)";
    case BN_ERR_RANGE:
        return "a value is out of range: a full context (raise n_ctx or truncate the KV "
               "cache), a batch over n_batch, or a token id >= n_vocab";
    case BN_ERR_TOKENIZER:
        return "special-token text is disallowed by default: allow it explicitly, or "
               "encode it as plain text";
    case BN_ERR_CANCELLED:
        return "cancelled by Context.cancel(); the sequence's KV cache is as it was "
               "before the call";
    case BN_ERR_NOMEM:
        return "out of memory: lower n_ctx, n_seq or n_batch, or load with use_mmap=True";
    case BN_ERR_INTERNAL: return "this is a bug in libbitnet: please report it with the message";
    default: return NULL;
    }
}

static PyObject *status_exc_type(bn_status st, const char *msg) {
    switch (st) {
    case BN_ERR_NOT_FOUND: return bnpy_ModelNotFoundError;
    case BN_ERR_IO:
        /* The library reports open() failures as IO with strerror() in the
         * message; a missing file is still "not found" for the caller. */
        if (msg && strstr(msg, strerror(ENOENT)) != NULL) return bnpy_ModelNotFoundError;
        return bnpy_BitNetIOError;
    case BN_ERR_FORMAT:
    case BN_ERR_UNSUPPORTED: return bnpy_ModelFormatError;
    case BN_ERR_INVALID_ARG:
    case BN_ERR_RANGE: return bnpy_ConfigurationError;
    case BN_ERR_TOKENIZER: return bnpy_TokenizerError;
    case BN_ERR_CANCELLED: return bnpy_CancelledError;
    case BN_ERR_NOMEM: return bnpy_BitNetMemoryError;
    default: return bnpy_InferenceError;
    }
}

/* Build and raise the exception for `st` with message `msg`; `filename` (a
 * str, may be NULL) is set on OSError-derived instances. Returns NULL. */
static PyObject *raise_status(bn_status st, const char *msg, PyObject *filename) {
    if (st == BN_OK) st = BN_ERR_INTERNAL; /* a caller bug: never raise "ok" */
    if (!msg || !msg[0]) msg = bn_status_str(st);
    PyObject *type = status_exc_type(st, msg);
    int is_os = type == bnpy_ModelNotFoundError || type == bnpy_BitNetIOError;
    if (is_os && filename) {
        /* OSError's str() appends the filename: drop "PATH: " from the
         * library's message so the path is not shown twice. */
        Py_ssize_t flen;
        const char *f = PyUnicode_AsUTF8AndSize(filename, &flen);
        if (!f) return NULL;
        if (flen > 0 && strncmp(msg, f, (size_t)flen) == 0 && msg[flen] == ':' &&
            msg[flen + 1] == ' ')
            msg += flen + 2;
    }
    PyObject *text = PyUnicode_DecodeUTF8(msg, (Py_ssize_t)strlen(msg), "replace");
    if (!text) return NULL;
    PyObject *inst;
    if (type == bnpy_ModelNotFoundError) {
        /* errno and message; the filename is set as an attribute below (the
         * message already names the file, so str() does not repeat it). */
        inst = PyObject_CallFunction(type, "iO", ENOENT, text);
    } else {
        inst = PyObject_CallFunctionObjArgs(type, text, NULL);
    }
    Py_DECREF(text);
    if (!inst) return NULL;
    const char *hint = status_hint(st);
    PyObject *hint_obj = hint ? PyUnicode_FromString(hint) : (Py_INCREF(Py_None), Py_None);
    PyObject *status = PyLong_FromLong((long)st);
    PyObject *status_name = PyUnicode_FromString(bn_status_str(st));
    int bad = !hint_obj || !status || !status_name ||
              PyObject_SetAttrString(inst, "hint", hint_obj) < 0 ||
              PyObject_SetAttrString(inst, "status", status) < 0 ||
              PyObject_SetAttrString(inst, "status_name", status_name) < 0;
    if (!bad && filename && is_os) bad = PyObject_SetAttrString(inst, "filename", filename) < 0;
    Py_XDECREF(hint_obj);
    Py_XDECREF(status);
    Py_XDECREF(status_name);
    if (bad) {
        Py_DECREF(inst);
        return NULL;
    }
    PyErr_SetObject(type, inst);
    Py_DECREF(inst);
    return NULL;
}

PyObject *bnpy_raise(bn_status st, const bn_error *err) {
    return raise_status(st, err ? err->msg : NULL, NULL);
}

PyObject *bnpy_raise_fmt(bn_status st, const char *fmt, ...) {
    char buf[BN_ERROR_MSG_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    return raise_status(st, buf, NULL);
}

static PyObject *raise_path(bn_status st, const bn_error *err, PyObject *path) {
    return raise_status(st, err ? err->msg : NULL, path);
}

/* Create one exception class named bitnet_py.<name> with the class
 * attributes error_type / hint / status / status_name, and add it to `m`. */
static PyObject *add_exception(PyObject *m, const char *name, PyObject *bases, const char *doc) {
    char qual[96];
    snprintf(qual, sizeof qual, "bitnet_py.%s", name);
    PyObject *dict = PyDict_New();
    if (!dict) return NULL;
    PyObject *et = PyUnicode_FromString(name);
    if (!et || PyDict_SetItemString(dict, "error_type", et) < 0 ||
        PyDict_SetItemString(dict, "hint", Py_None) < 0 ||
        PyDict_SetItemString(dict, "status", Py_None) < 0 ||
        PyDict_SetItemString(dict, "status_name", Py_None) < 0) {
        Py_XDECREF(et);
        Py_DECREF(dict);
        return NULL;
    }
    Py_DECREF(et);
    PyObject *cls = PyErr_NewExceptionWithDoc(qual, doc, bases, dict);
    Py_DECREF(dict);
    if (!cls) return NULL;
    Py_INCREF(cls); /* one reference for the global, one for the module */
    if (PyModule_AddObject(m, name, cls) < 0) {
        Py_DECREF(cls);
        Py_DECREF(cls);
        return NULL;
    }
    return cls;
}

static PyObject *bases2(PyObject *a, PyObject *b) { return PyTuple_Pack(2, a, b); }

static int init_exceptions(PyObject *m) {
    PyObject *t;
    bnpy_BitNetError = add_exception(m, "BitNetError", PyExc_Exception,
                                     "Base class of every error raised by libbitnet.\n\n"
                                     "Attributes: error_type (class name), hint (advice or None), "
                                     "status (bn_status code or None), status_name.");
    if (!bnpy_BitNetError) return -1;
#define BNPY_EXC2(var, name, base2, doc)                                                           \
    do {                                                                                           \
        t = bases2(bnpy_BitNetError, base2);                                                       \
        if (!t) return -1;                                                                         \
        var = add_exception(m, name, t, doc);                                                      \
        Py_DECREF(t);                                                                              \
        if (!var) return -1;                                                                       \
    } while (0)
    BNPY_EXC2(bnpy_ModelNotFoundError, "ModelNotFoundError", PyExc_FileNotFoundError,
              "The model (or another input file) does not exist.");
    BNPY_EXC2(bnpy_ModelFormatError, "ModelFormatError", PyExc_ValueError,
              "The file is malformed, truncated, or of an unsupported kind.");
    BNPY_EXC2(bnpy_TokenizerError, "TokenizerError", PyExc_ValueError,
              "Text that cannot be encoded (e.g. disallowed special tokens).");
    BNPY_EXC2(bnpy_ConfigurationError, "ConfigurationError", PyExc_ValueError,
              "An argument is invalid or out of range.");
    BNPY_EXC2(bnpy_InferenceError, "InferenceError", PyExc_RuntimeError, "Evaluation failed.");
    BNPY_EXC2(bnpy_BitNetIOError, "BitNetIOError", PyExc_OSError,
              "Reading or writing a file failed.");
    BNPY_EXC2(bnpy_BitNetMemoryError, "BitNetMemoryError", PyExc_MemoryError,
              "libbitnet could not allocate memory.");
#undef BNPY_EXC2
    bnpy_CancelledError = add_exception(m, "CancelledError", bnpy_InferenceError,
                                        "The call was cancelled (Context.cancel()).");
    if (!bnpy_CancelledError) return -1;
    return 0;
}

/* ======================================================================== */
/* Arrays and argument helpers                                              */
/* ======================================================================== */

static PyObject *g_numpy;

PyObject *bnpy_numpy(void) {
    if (!g_numpy) g_numpy = PyImport_ImportModule("numpy");
    return g_numpy;
}

PyObject *bnpy_empty(const char *dtype, int ndim, const Py_ssize_t *shape, void **data) {
    PyObject *np = bnpy_numpy();
    if (!np) return NULL;
    PyObject *shp = PyTuple_New(ndim);
    if (!shp) return NULL;
    for (int i = 0; i < ndim; i++) {
        PyObject *d = PyLong_FromSsize_t(shape[i]);
        if (!d) {
            Py_DECREF(shp);
            return NULL;
        }
        PyTuple_SET_ITEM(shp, i, d);
    }
    PyObject *arr = PyObject_CallMethod(np, "empty", "Os", shp, dtype);
    Py_DECREF(shp);
    if (!arr) return NULL;
    Py_buffer view;
    if (PyObject_GetBuffer(arr, &view, PyBUF_WRITABLE | PyBUF_C_CONTIGUOUS) < 0) {
        Py_DECREF(arr);
        return NULL;
    }
    /* numpy never moves an array's data, so the pointer stays valid for the
     * array's lifetime after the view is released. */
    *data = view.buf;
    PyBuffer_Release(&view);
    return arr;
}

/* Format kind and size of a buffer's items: 'i' signed, 'u' unsigned, 'f'
 * float, 'b' bool; 0 when not a native/little-endian scalar format. */
static char buffer_kind(const Py_buffer *v) {
    const char *f = v->format ? v->format : "B";
    if (*f == '@' || *f == '=' || *f == '<') {
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
        if (*f == '<') return 0;
#endif
        f++;
    }
    if (f[0] == '\0' || f[1] != '\0') return 0;
    switch (f[0]) {
    case 'b':
    case 'h':
    case 'i':
    case 'l':
    case 'q':
    case 'n': return 'i';
    case 'B':
    case 'H':
    case 'I':
    case 'L':
    case 'Q':
    case 'N': return 'u';
    case 'e':
    case 'f':
    case 'd': return 'f';
    case '?': return 'b';
    default: return 0;
    }
}

int bnpy_get_f32(PyObject *obj, Py_buffer *view) {
    if (PyObject_CheckBuffer(obj)) {
        if (PyObject_GetBuffer(obj, view, PyBUF_C_CONTIGUOUS | PyBUF_FORMAT) == 0) {
            if (buffer_kind(view) == 'f' && view->itemsize == 4) return 0;
            PyBuffer_Release(view);
        } else {
            PyErr_Clear(); /* e.g. not contiguous: convert below */
        }
    }
    PyObject *np = bnpy_numpy();
    if (!np) return -1;
    PyObject *arr = PyObject_CallMethod(np, "ascontiguousarray", "Os", obj, "float32");
    if (!arr) return -1;
    int rc = PyObject_GetBuffer(arr, view, PyBUF_C_CONTIGUOUS | PyBUF_FORMAT);
    Py_DECREF(arr); /* the view holds its own reference */
    return rc;
}

static int read_int_item(const Py_buffer *v, Py_ssize_t i, char kind, long long *out,
                         int *overflow) {
    const char *p = (const char *)v->buf + i * v->itemsize;
    uint64_t u;
    switch (v->itemsize) { /* the item's bits, in native byte order */
    case 1: {
        uint8_t x;
        memcpy(&x, p, 1);
        u = x;
        break;
    }
    case 2: {
        uint16_t x;
        memcpy(&x, p, 2);
        u = x;
        break;
    }
    case 4: {
        uint32_t x;
        memcpy(&x, p, 4);
        u = x;
        break;
    }
    case 8: {
        uint64_t x;
        memcpy(&x, p, 8);
        u = x;
        break;
    }
    default: return -1;
    }
    *overflow = 0;
    if (kind == 'i') { /* two's complement of itemsize bytes: sign-extend */
        const uint64_t sign = (uint64_t)1 << (8 * v->itemsize - 1);
        *out = (u & sign) ? (long long)(u - sign) - (long long)(sign - 1) - 1 : (long long)u;
        return 0;
    }
    if (u > (uint64_t)INT64_MAX) *overflow = 1;
    *out = (long long)(u & (uint64_t)INT64_MAX);
    return 0;
}

int bnpy_get_i32_seq(PyObject *obj, const char *what, int32_t **out, Py_ssize_t *n) {
    *out = NULL;
    *n = 0;
    if (PyUnicode_Check(obj) || PyBytes_Check(obj) || PyByteArray_Check(obj)) {
        PyErr_Format(PyExc_TypeError, "%s must be a sequence of ints, not %.100s", what,
                     Py_TYPE(obj)->tp_name);
        return -1;
    }
    if (PyObject_CheckBuffer(obj)) {
        Py_buffer v;
        if (PyObject_GetBuffer(obj, &v, PyBUF_C_CONTIGUOUS | PyBUF_FORMAT) == 0) {
            char kind = buffer_kind(&v);
            if ((kind == 'i' || kind == 'u') && v.ndim <= 1) {
                Py_ssize_t cnt = v.itemsize ? v.len / v.itemsize : 0;
                int32_t *ids = PyMem_Malloc((size_t)(cnt > 0 ? cnt : 1) * sizeof(int32_t));
                if (!ids) {
                    PyBuffer_Release(&v);
                    PyErr_NoMemory();
                    return -1;
                }
                for (Py_ssize_t i = 0; i < cnt; i++) {
                    long long x = 0;
                    int ovf = 0;
                    if (read_int_item(&v, i, kind, &x, &ovf) < 0 || ovf || x < INT32_MIN ||
                        x > INT32_MAX) {
                        PyMem_Free(ids);
                        PyBuffer_Release(&v);
                        bnpy_raise_fmt(BN_ERR_RANGE, "%s[%zd] does not fit in int32", what, i);
                        return -1;
                    }
                    ids[i] = (int32_t)x;
                }
                PyBuffer_Release(&v);
                *out = ids;
                *n = cnt;
                return 0;
            }
            PyBuffer_Release(&v);
            if (kind == 'f' || kind == 'b') {
                PyErr_Format(PyExc_TypeError, "%s must hold integers, not floats or bools", what);
                return -1;
            }
        } else {
            PyErr_Clear();
        }
    }
    PyObject *seq = PySequence_Fast(obj, "token ids must be a sequence of ints");
    if (!seq) return -1;
    Py_ssize_t cnt = PySequence_Fast_GET_SIZE(seq);
    int32_t *ids = PyMem_Malloc((size_t)(cnt > 0 ? cnt : 1) * sizeof(int32_t));
    if (!ids) {
        Py_DECREF(seq);
        PyErr_NoMemory();
        return -1;
    }
    PyObject **items = PySequence_Fast_ITEMS(seq);
    for (Py_ssize_t i = 0; i < cnt; i++) {
        PyObject *idx = PyNumber_Index(items[i]);
        if (!idx) {
            PyMem_Free(ids);
            Py_DECREF(seq);
            return -1;
        }
        int ovf = 0;
        long long x = PyLong_AsLongLongAndOverflow(idx, &ovf);
        Py_DECREF(idx);
        if (x == -1 && PyErr_Occurred()) {
            PyMem_Free(ids);
            Py_DECREF(seq);
            return -1;
        }
        if (ovf || x < INT32_MIN || x > INT32_MAX) {
            PyMem_Free(ids);
            Py_DECREF(seq);
            bnpy_raise_fmt(BN_ERR_RANGE, "%s[%zd] does not fit in int32", what, i);
            return -1;
        }
        ids[i] = (int32_t)x;
    }
    Py_DECREF(seq);
    *out = ids;
    *n = cnt;
    return 0;
}

int bnpy_type_arg(PyObject *obj) {
    if (PyUnicode_Check(obj)) {
        const char *s = PyUnicode_AsUTF8(obj);
        if (!s) return -1;
        int t = bn_type_from_name(s);
        if (t < 0) {
            bnpy_raise_fmt(BN_ERR_INVALID_ARG, "unknown tensor type name '%.64s'", s);
            return -1;
        }
        return t;
    }
    if (PyLong_Check(obj) && !PyBool_Check(obj)) {
        long v = PyLong_AsLong(obj);
        if (v == -1 && PyErr_Occurred()) return -1;
        if (v < 0 || v > INT32_MAX || strcmp(bn_type_name((int)v), "unknown") == 0) {
            bnpy_raise_fmt(BN_ERR_INVALID_ARG, "unknown tensor type id %ld", v);
            return -1;
        }
        return (int)v;
    }
    PyErr_Format(PyExc_TypeError, "tensor type must be a name (str) or an id (int), not %.100s",
                 Py_TYPE(obj)->tp_name);
    return -1;
}

/* UTF-8 of a str key with no embedded NUL (borrowed from `obj`). */
static const char *key_utf8(PyObject *obj, const char *what) {
    if (!PyUnicode_Check(obj)) {
        PyErr_Format(PyExc_TypeError, "%s must be str, not %.100s", what, Py_TYPE(obj)->tp_name);
        return NULL;
    }
    Py_ssize_t len;
    const char *s = PyUnicode_AsUTF8AndSize(obj, &len);
    if (!s) return NULL;
    if ((size_t)len != strlen(s)) {
        PyErr_Format(PyExc_ValueError, "%s must not contain NUL characters", what);
        return NULL;
    }
    return s;
}

/* ======================================================================== */
/* Module functions                                                         */
/* ======================================================================== */

static PyObject *py_version(PyObject *mod, PyObject *unused) {
    return PyUnicode_FromString(bn_version());
}

static PyObject *py_cpu_features(PyObject *mod, PyObject *unused) {
    PyObject *s = PyUnicode_FromString(bn_cpu_features());
    if (!s) return NULL;
    PyObject *parts = PyUnicode_Split(s, NULL, -1);
    Py_DECREF(s);
    return parts;
}

static PyObject *py_kernel_name(PyObject *mod, PyObject *unused) {
    return PyUnicode_FromString(bn_kernel_name());
}

static PyObject *py_build_info(PyObject *mod, PyObject *unused) {
    return PyUnicode_FromString(bn_build_info());
}

static PyObject *py_type_id(PyObject *mod, PyObject *arg) {
    if (!PyUnicode_Check(arg)) {
        PyErr_Format(PyExc_TypeError, "type name must be str, not %.100s", Py_TYPE(arg)->tp_name);
        return NULL;
    }
    int t = bnpy_type_arg(arg);
    return t < 0 ? NULL : PyLong_FromLong(t);
}

static PyObject *py_type_name(PyObject *mod, PyObject *arg) {
    if (!PyLong_Check(arg)) {
        PyErr_Format(PyExc_TypeError, "type id must be int, not %.100s", Py_TYPE(arg)->tp_name);
        return NULL;
    }
    int t = bnpy_type_arg(arg);
    return t < 0 ? NULL : PyUnicode_FromString(bn_type_name(t));
}

static PyObject *py_type_nbytes(PyObject *mod, PyObject *args, PyObject *kw) {
    static char *kwlist[] = {"type", "n_cols", "n_rows", NULL};
    PyObject *type_obj;
    long long n_cols, n_rows = 1;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "OL|L:type_nbytes", kwlist, &type_obj, &n_cols,
                                     &n_rows))
        return NULL;
    int t = bnpy_type_arg(type_obj);
    if (t < 0) return NULL;
    bn_error err = {0};
    size_t nb = bn_type_nbytes(t, (int64_t)n_cols, (int64_t)n_rows, &err);
    if (nb == 0) return bnpy_raise(err.code != BN_OK ? err.code : BN_ERR_INVALID_ARG, &err);
    return PyLong_FromSize_t(nb);
}

/* Rows and columns of a 1-D or 2-D float view. */
static int view_rows_cols(const Py_buffer *v, int64_t *rows, int64_t *cols) {
    if (v->ndim == 1) {
        *rows = 1;
        *cols = v->shape[0];
    } else if (v->ndim == 2) {
        *rows = v->shape[0];
        *cols = v->shape[1];
    } else {
        bnpy_raise_fmt(BN_ERR_INVALID_ARG, "expected a 1-D or 2-D array, got %d dims", v->ndim);
        return -1;
    }
    return 0;
}

static PyObject *py_quantize(PyObject *mod, PyObject *args, PyObject *kw) {
    static char *kwlist[] = {"type", "x", NULL};
    PyObject *type_obj, *x;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "OO:quantize", kwlist, &type_obj, &x)) return NULL;
    int t = bnpy_type_arg(type_obj);
    if (t < 0) return NULL;
    Py_buffer v;
    if (bnpy_get_f32(x, &v) < 0) return NULL;
    int64_t rows, cols;
    if (view_rows_cols(&v, &rows, &cols) < 0) {
        PyBuffer_Release(&v);
        return NULL;
    }
    bn_error err = {0};
    size_t nb = bn_type_nbytes(t, cols, rows, &err);
    if (nb == 0) {
        PyBuffer_Release(&v);
        return bnpy_raise(err.code != BN_OK ? err.code : BN_ERR_INVALID_ARG, &err);
    }
    if (nb > (size_t)PY_SSIZE_T_MAX) {
        PyBuffer_Release(&v);
        return PyErr_NoMemory();
    }
    PyObject *out = PyBytes_FromStringAndSize(NULL, (Py_ssize_t)nb);
    if (!out) {
        PyBuffer_Release(&v);
        return NULL;
    }
    char *dst = PyBytes_AS_STRING(out);
    bn_status st;
    Py_BEGIN_ALLOW_THREADS st = bn_quantize(t, (const float *)v.buf, cols, rows, dst, nb, &err);
    Py_END_ALLOW_THREADS PyBuffer_Release(&v);
    if (st != BN_OK) {
        Py_DECREF(out);
        return bnpy_raise(st, &err);
    }
    return out;
}

static PyObject *py_dequantize(PyObject *mod, PyObject *args, PyObject *kw) {
    static char *kwlist[] = {"type", "data", "n_cols", "n_rows", NULL};
    PyObject *type_obj;
    Py_buffer src;
    long long n_cols, n_rows = 1;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "Oy*L|L:dequantize", kwlist, &type_obj, &src,
                                     &n_cols, &n_rows))
        return NULL;
    int t = bnpy_type_arg(type_obj);
    if (t < 0 || n_cols <= 0 || n_rows <= 0) {
        PyBuffer_Release(&src);
        if (t < 0) return NULL;
        return bnpy_raise_fmt(BN_ERR_INVALID_ARG, "shape %lld x %lld is not positive", n_cols,
                              n_rows);
    }
    if (n_cols > PY_SSIZE_T_MAX / n_rows) {
        PyBuffer_Release(&src);
        return PyErr_NoMemory();
    }
    void *dst;
    Py_ssize_t shape[2] = {(Py_ssize_t)n_rows, (Py_ssize_t)n_cols};
    PyObject *out = bnpy_empty("float32", 2, shape, &dst);
    if (!out) {
        PyBuffer_Release(&src);
        return NULL;
    }
    bn_error err = {0};
    bn_status st;
    Py_BEGIN_ALLOW_THREADS st = bn_dequantize(t, src.buf, (size_t)src.len, (int64_t)n_cols,
                                              (int64_t)n_rows, (float *)dst, &err);
    Py_END_ALLOW_THREADS PyBuffer_Release(&src);
    if (st != BN_OK) {
        Py_DECREF(out);
        return bnpy_raise(st, &err);
    }
    return out;
}

static PyObject *py_ternarize(PyObject *mod, PyObject *arg) {
    Py_buffer v;
    if (bnpy_get_f32(arg, &v) < 0) return NULL;
    int64_t n = (int64_t)(v.len / 4);
    if (n <= 0) {
        PyBuffer_Release(&v);
        return bnpy_raise_fmt(BN_ERR_INVALID_ARG, "ternarize needs a non-empty array");
    }
    void *q;
    PyObject *qa = bnpy_empty("int8", v.ndim, v.shape, &q);
    if (!qa) {
        PyBuffer_Release(&v);
        return NULL;
    }
    float scale = 0.0f;
    bn_error err = {0};
    bn_status st;
    Py_BEGIN_ALLOW_THREADS st = bn_ternarize((const float *)v.buf, n, (int8_t *)q, &scale, &err);
    Py_END_ALLOW_THREADS PyBuffer_Release(&v);
    if (st != BN_OK) {
        Py_DECREF(qa);
        return bnpy_raise(st, &err);
    }
    PyObject *res = Py_BuildValue("(Nd)", qa, (double)scale);
    return res;
}

/* ======================================================================== */
/* GGUF value types                                                         */
/* ======================================================================== */

typedef struct vtype_info {
    const char *name;
    bn_gguf_vtype vt;
    char kind; /* 'u', 'i', 'f', 'b', 's' */
    size_t size;
    const char *dtype; /* numpy dtype of arrays */
} vtype_info;

static const vtype_info k_vtypes[] = {
    {"u8", BN_GGUF_UINT8, 'u', 1, "<u1"},    {"i8", BN_GGUF_INT8, 'i', 1, "<i1"},
    {"u16", BN_GGUF_UINT16, 'u', 2, "<u2"},  {"i16", BN_GGUF_INT16, 'i', 2, "<i2"},
    {"u32", BN_GGUF_UINT32, 'u', 4, "<u4"},  {"i32", BN_GGUF_INT32, 'i', 4, "<i4"},
    {"f32", BN_GGUF_FLOAT32, 'f', 4, "<f4"}, {"bool", BN_GGUF_BOOL, 'b', 1, "bool"},
    {"str", BN_GGUF_STRING, 's', 0, NULL},   {"u64", BN_GGUF_UINT64, 'u', 8, "<u8"},
    {"i64", BN_GGUF_INT64, 'i', 8, "<i8"},   {"f64", BN_GGUF_FLOAT64, 'f', 8, "<f8"},
};
#define N_VTYPES (sizeof k_vtypes / sizeof k_vtypes[0])

static const vtype_info *vtype_by_name(PyObject *obj) {
    if (!PyUnicode_Check(obj)) {
        PyErr_Format(PyExc_TypeError, "value type must be str, not %.100s", Py_TYPE(obj)->tp_name);
        return NULL;
    }
    const char *s = PyUnicode_AsUTF8(obj);
    if (!s) return NULL;
    for (size_t i = 0; i < N_VTYPES; i++) {
        if (strcmp(k_vtypes[i].name, s) == 0) return &k_vtypes[i];
    }
    bnpy_raise_fmt(BN_ERR_INVALID_ARG,
                   "unknown GGUF value type '%.32s' (u8 i8 u16 i16 u32 i32 u64 i64 f32 f64 "
                   "bool str)",
                   s);
    return NULL;
}

static const vtype_info *vtype_by_id(bn_gguf_vtype vt) {
    for (size_t i = 0; i < N_VTYPES; i++) {
        if (k_vtypes[i].vt == vt) return &k_vtypes[i];
    }
    return NULL;
}

/* Convert a Python number to one little-endian value of `ti` at `dst`,
 * range-checked. */
/* The low `size` bytes of `bits`, little-endian as GGUF stores them. */
static void store_le(void *dst, uint64_t bits, size_t size) {
    unsigned char *d = dst;
    for (size_t i = 0; i < size; i++)
        d[i] = (unsigned char)(bits >> (8 * i));
}

static int pack_scalar(const vtype_info *ti, PyObject *v, void *dst, const char *key) {
    if (ti->kind == 'b') {
        int b = PyObject_IsTrue(v);
        if (b < 0) return -1;
        uint8_t x = (uint8_t)b;
        memcpy(dst, &x, 1);
        return 0;
    }
    if (ti->kind == 'f') {
        if (!PyFloat_Check(v) && !PyLong_Check(v) && !PyNumber_Check(v)) {
            PyErr_Format(PyExc_TypeError, "%s: expected a number, not %.100s", key,
                         Py_TYPE(v)->tp_name);
            return -1;
        }
        double d = PyFloat_AsDouble(v);
        if (d == -1.0 && PyErr_Occurred()) return -1;
        if (ti->size == 4) {
            float f = (float)d;
            memcpy(dst, &f, 4);
        } else {
            memcpy(dst, &d, 8);
        }
        return 0;
    }
    if (PyBool_Check(v) || PyFloat_Check(v)) {
        PyErr_Format(PyExc_TypeError, "%s: expected an int for type %s, not %.100s", key, ti->name,
                     Py_TYPE(v)->tp_name);
        return -1;
    }
    PyObject *idx = PyNumber_Index(v);
    if (!idx) return -1;
    if (ti->kind == 'u') {
        unsigned long long x = PyLong_AsUnsignedLongLong(idx);
        Py_DECREF(idx);
        if (x == (unsigned long long)-1 && PyErr_Occurred()) {
            PyErr_Clear();
            bnpy_raise_fmt(BN_ERR_RANGE, "%s: value does not fit in %s", key, ti->name);
            return -1;
        }
        unsigned long long max = ti->size == 8 ? UINT64_MAX : ((1ULL << (8 * ti->size)) - 1);
        if (x > max) {
            bnpy_raise_fmt(BN_ERR_RANGE, "%s: value %llu does not fit in %s", key, x, ti->name);
            return -1;
        }
        store_le(dst, (uint64_t)x, ti->size);
        return 0;
    }
    int ovf = 0;
    long long x = PyLong_AsLongLongAndOverflow(idx, &ovf);
    Py_DECREF(idx);
    if (x == -1 && PyErr_Occurred()) return -1;
    long long lo = ti->size == 8 ? INT64_MIN : -(1LL << (8 * ti->size - 1));
    long long hi = ti->size == 8 ? INT64_MAX : ((1LL << (8 * ti->size - 1)) - 1);
    if (ovf || x < lo || x > hi) {
        bnpy_raise_fmt(BN_ERR_RANGE, "%s: value does not fit in %s", key, ti->name);
        return -1;
    }
    store_le(dst, (uint64_t)x, ti->size); /* two's complement: the low bytes */
    return 0;
}

/* ======================================================================== */
/* GGUFWriter                                                               */
/* ======================================================================== */

typedef struct BnpyGGUFWriter {
    PyObject_HEAD bn_gguf_writer *w;
    int busy;
} BnpyGGUFWriter;

static PyTypeObject BnpyGGUFWriter_Type;

static PyObject *writer_new(PyTypeObject *type, PyObject *args, PyObject *kw) {
    static char *kwlist[] = {NULL};
    if (!PyArg_ParseTupleAndKeywords(args, kw, ":GGUFWriter", kwlist)) return NULL;
    BnpyGGUFWriter *self = (BnpyGGUFWriter *)type->tp_alloc(type, 0);
    if (!self) return NULL;
    bn_error err = {0};
    bn_status st = bn_gguf_writer_new(&self->w, &err);
    if (st != BN_OK) {
        self->w = NULL;
        Py_DECREF(self);
        return bnpy_raise(st, &err);
    }
    return (PyObject *)self;
}

static void writer_dealloc(PyObject *obj) {
    BnpyGGUFWriter *self = (BnpyGGUFWriter *)obj;
    if (self->w) bn_gguf_writer_free(self->w);
    Py_TYPE(obj)->tp_free(obj);
}

static bn_gguf_writer *writer_get(BnpyGGUFWriter *self) {
    if (self->busy) {
        PyErr_SetString(bnpy_InferenceError, "GGUFWriter is in use by another thread");
        return NULL;
    }
    if (!self->w) {
        PyErr_SetString(PyExc_ValueError, "GGUFWriter is not initialized");
        return NULL;
    }
    return self->w;
}

static PyObject *writer_set_str_impl(BnpyGGUFWriter *self, const char *key, PyObject *value) {
    const char *s;
    Py_ssize_t len;
    if (PyUnicode_Check(value)) {
        s = PyUnicode_AsUTF8AndSize(value, &len);
        if (!s) return NULL;
    } else if (PyBytes_Check(value)) {
        s = PyBytes_AS_STRING(value);
        len = PyBytes_GET_SIZE(value);
    } else {
        PyErr_Format(PyExc_TypeError, "%s: expected str or bytes, not %.100s", key,
                     Py_TYPE(value)->tp_name);
        return NULL;
    }
    bn_error err = {0};
    bn_status st = bn_gguf_writer_set_str(self->w, key, s, (uint64_t)len, &err);
    if (st != BN_OK) return bnpy_raise(st, &err);
    Py_RETURN_NONE;
}

static PyObject *writer_set(PyObject *obj, PyObject *args, PyObject *kw) {
    BnpyGGUFWriter *self = (BnpyGGUFWriter *)obj;
    static char *kwlist[] = {"key", "value", "type", NULL};
    PyObject *key_obj, *value, *type_obj;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "OOO:set", kwlist, &key_obj, &value, &type_obj))
        return NULL;
    if (!writer_get(self)) return NULL;
    const char *key = key_utf8(key_obj, "key");
    if (!key) return NULL;
    const vtype_info *ti = vtype_by_name(type_obj);
    if (!ti) return NULL;
    if (ti->kind == 's') return writer_set_str_impl(self, key, value);
    unsigned char buf[8];
    if (pack_scalar(ti, value, buf, key) < 0) return NULL;
    bn_error err = {0};
    bn_status st = bn_gguf_writer_set(self->w, key, ti->vt, buf, &err);
    if (st != BN_OK) return bnpy_raise(st, &err);
    Py_RETURN_NONE;
}

static PyObject *writer_set_str(PyObject *obj, PyObject *args, PyObject *kw) {
    BnpyGGUFWriter *self = (BnpyGGUFWriter *)obj;
    static char *kwlist[] = {"key", "value", NULL};
    PyObject *key_obj, *value;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "OO:set_str", kwlist, &key_obj, &value)) return NULL;
    if (!writer_get(self)) return NULL;
    const char *key = key_utf8(key_obj, "key");
    if (!key) return NULL;
    return writer_set_str_impl(self, key, value);
}

static PyObject *writer_set_arr_str_impl(BnpyGGUFWriter *self, const char *key, PyObject *values) {
    PyObject *seq = PySequence_Fast(values, "set_arr_str: values must be a sequence");
    if (!seq) return NULL;
    Py_ssize_t n = PySequence_Fast_GET_SIZE(seq);
    PyObject **items = PySequence_Fast_ITEMS(seq);
    size_t cnt = n > 0 ? (size_t)n : 1;
    const char **strs = PyMem_Malloc(cnt * sizeof(char *));
    uint64_t *lens = PyMem_Malloc(cnt * sizeof(uint64_t));
    if (!strs || !lens) {
        PyMem_Free(strs);
        PyMem_Free(lens);
        Py_DECREF(seq);
        return PyErr_NoMemory();
    }
    PyObject *res = NULL;
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *it = items[i];
        Py_ssize_t len;
        if (PyUnicode_Check(it)) {
            /* The UTF-8 buffer is cached in the str, which `seq` keeps alive. */
            strs[i] = PyUnicode_AsUTF8AndSize(it, &len);
            if (!strs[i]) goto done;
        } else if (PyBytes_Check(it)) {
            strs[i] = PyBytes_AS_STRING(it);
            len = PyBytes_GET_SIZE(it);
        } else {
            PyErr_Format(PyExc_TypeError, "%s[%zd]: expected str or bytes, not %.100s", key, i,
                         Py_TYPE(it)->tp_name);
            goto done;
        }
        lens[i] = (uint64_t)len;
    }
    {
        bn_error err = {0};
        bn_status st = bn_gguf_writer_set_arr_str(self->w, key, strs, lens, (uint64_t)n, &err);
        if (st != BN_OK) {
            bnpy_raise(st, &err);
            goto done;
        }
    }
    Py_INCREF(Py_None);
    res = Py_None;
done:
    PyMem_Free(strs);
    PyMem_Free(lens);
    Py_DECREF(seq);
    return res;
}

static PyObject *writer_set_arr(PyObject *obj, PyObject *args, PyObject *kw) {
    BnpyGGUFWriter *self = (BnpyGGUFWriter *)obj;
    static char *kwlist[] = {"key", "values", "elem_type", NULL};
    PyObject *key_obj, *values, *type_obj;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "OOO:set_arr", kwlist, &key_obj, &values, &type_obj))
        return NULL;
    if (!writer_get(self)) return NULL;
    const char *key = key_utf8(key_obj, "key");
    if (!key) return NULL;
    const vtype_info *ti = vtype_by_name(type_obj);
    if (!ti) return NULL;
    if (ti->kind == 's') return writer_set_arr_str_impl(self, key, values);

    bn_error err = {0};
    bn_status st;
    /* Fast path: a contiguous 1-D buffer of exactly this type. */
    if (PyObject_CheckBuffer(values)) {
        Py_buffer v;
        if (PyObject_GetBuffer(values, &v, PyBUF_C_CONTIGUOUS | PyBUF_FORMAT) == 0) {
            if (v.ndim == 1 && buffer_kind(&v) == ti->kind && (size_t)v.itemsize == ti->size &&
                ti->kind != 'b') {
                st = bn_gguf_writer_set_arr(self->w, key, ti->vt, v.buf,
                                            (uint64_t)(v.len / v.itemsize), &err);
                PyBuffer_Release(&v);
                if (st != BN_OK) return bnpy_raise(st, &err);
                Py_RETURN_NONE;
            }
            PyBuffer_Release(&v);
        } else {
            PyErr_Clear();
        }
    }
    if (PyUnicode_Check(values) || PyBytes_Check(values)) {
        PyErr_Format(PyExc_TypeError, "%s: values must be a sequence of numbers", key);
        return NULL;
    }
    PyObject *seq = PySequence_Fast(values, "set_arr: values must be a sequence of numbers");
    if (!seq) return NULL;
    Py_ssize_t n = PySequence_Fast_GET_SIZE(seq);
    PyObject **items = PySequence_Fast_ITEMS(seq);
    unsigned char *buf = PyMem_Malloc((size_t)(n > 0 ? n : 1) * ti->size);
    if (!buf) {
        Py_DECREF(seq);
        return PyErr_NoMemory();
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        if (pack_scalar(ti, items[i], buf + (size_t)i * ti->size, key) < 0) {
            PyMem_Free(buf);
            Py_DECREF(seq);
            return NULL;
        }
    }
    Py_DECREF(seq);
    st = bn_gguf_writer_set_arr(self->w, key, ti->vt, buf, (uint64_t)n, &err);
    PyMem_Free(buf);
    if (st != BN_OK) return bnpy_raise(st, &err);
    Py_RETURN_NONE;
}

static PyObject *writer_set_arr_str(PyObject *obj, PyObject *args, PyObject *kw) {
    BnpyGGUFWriter *self = (BnpyGGUFWriter *)obj;
    static char *kwlist[] = {"key", "values", NULL};
    PyObject *key_obj, *values;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "OO:set_arr_str", kwlist, &key_obj, &values))
        return NULL;
    if (!writer_get(self)) return NULL;
    const char *key = key_utf8(key_obj, "key");
    if (!key) return NULL;
    if (PyUnicode_Check(values) || PyBytes_Check(values)) {
        PyErr_Format(PyExc_TypeError, "%s: values must be a sequence of str or bytes", key);
        return NULL;
    }
    return writer_set_arr_str_impl(self, key, values);
}

#define BNPY_MAX_DIMS 4

static PyObject *writer_add_tensor(PyObject *obj, PyObject *args, PyObject *kw) {
    BnpyGGUFWriter *self = (BnpyGGUFWriter *)obj;
    static char *kwlist[] = {"name", "type", "shape", "data", NULL};
    PyObject *name_obj, *type_obj, *shape_obj;
    Py_buffer data;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "OOOy*:add_tensor", kwlist, &name_obj, &type_obj,
                                     &shape_obj, &data))
        return NULL;
    PyObject *res = NULL;
    int64_t ne[BNPY_MAX_DIMS];
    int32_t *dims = NULL;
    Py_ssize_t n_dims = 0;
    if (!writer_get(self)) goto done;
    const char *name = key_utf8(name_obj, "tensor name");
    if (!name) goto done;
    int t = bnpy_type_arg(type_obj);
    if (t < 0) goto done;
    if (bnpy_get_i32_seq(shape_obj, "shape", &dims, &n_dims) < 0) goto done;
    if (n_dims < 1 || n_dims > BNPY_MAX_DIMS) {
        bnpy_raise_fmt(BN_ERR_INVALID_ARG, "tensor %.200s: shape must have 1 to %d dims, not %zd",
                       name, BNPY_MAX_DIMS, n_dims);
        goto done;
    }
    for (Py_ssize_t i = 0; i < n_dims; i++)
        ne[i] = dims[i];
    {
        bn_error err = {0};
        bn_status st;
        self->busy = 1;
        Py_BEGIN_ALLOW_THREADS st = bn_gguf_writer_add_tensor(self->w, name, t, (int)n_dims, ne,
                                                              data.buf, (size_t)data.len, &err);
        Py_END_ALLOW_THREADS self->busy = 0;
        if (st != BN_OK) {
            bnpy_raise(st, &err);
            goto done;
        }
    }
    Py_INCREF(Py_None);
    res = Py_None;
done:
    PyMem_Free(dims);
    PyBuffer_Release(&data);
    return res;
}

static PyObject *writer_write(PyObject *obj, PyObject *arg) {
    BnpyGGUFWriter *self = (BnpyGGUFWriter *)obj;
    if (!writer_get(self)) return NULL;
    PyObject *path_bytes = NULL;
    if (!PyUnicode_FSConverter(arg, &path_bytes)) return NULL;
    bn_error err = {0};
    bn_status st;
    self->busy = 1;
    Py_BEGIN_ALLOW_THREADS st = bn_gguf_writer_write(self->w, PyBytes_AS_STRING(path_bytes), &err);
    Py_END_ALLOW_THREADS self->busy = 0;
    if (st != BN_OK) {
        PyObject *p = PyUnicode_DecodeFSDefault(PyBytes_AS_STRING(path_bytes));
        Py_DECREF(path_bytes);
        if (!p) return NULL;
        raise_path(st, &err, p);
        Py_DECREF(p);
        return NULL;
    }
    Py_DECREF(path_bytes);
    Py_RETURN_NONE;
}

static PyMethodDef writer_methods[] = {
    {"set", (PyCFunction)(void (*)(void))writer_set, METH_VARARGS | METH_KEYWORDS,
     "set(key, value, type): a scalar of type u8 i8 u16 i16 u32 i32 u64 i64 f32 f64 bool str."},
    {"set_str", (PyCFunction)(void (*)(void))writer_set_str, METH_VARARGS | METH_KEYWORDS,
     "set_str(key, value): a string (str, or bytes stored as they are)."},
    {"set_arr", (PyCFunction)(void (*)(void))writer_set_arr, METH_VARARGS | METH_KEYWORDS,
     "set_arr(key, values, elem_type): an array of numbers (list or 1-D ndarray), or of "
     "strings when elem_type is 'str'."},
    {"set_arr_str", (PyCFunction)(void (*)(void))writer_set_arr_str, METH_VARARGS | METH_KEYWORDS,
     "set_arr_str(key, values): an array of str or bytes."},
    {"add_tensor", (PyCFunction)(void (*)(void))writer_add_tensor, METH_VARARGS | METH_KEYWORDS,
     "add_tensor(name, type, shape, data): shape in ggml order (ne0, the row length, first); "
     "data holds exactly type_nbytes(type, ne0, prod(ne1..)) bytes and is copied."},
    {"write", writer_write, METH_O, "write(path): write a GGUF v3 file."},
    {NULL, NULL, 0, NULL},
};

static PyTypeObject BnpyGGUFWriter_Type = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "bitnet_py._core.GGUFWriter",
    .tp_basicsize = sizeof(BnpyGGUFWriter),
    .tp_dealloc = writer_dealloc,
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE,
    .tp_doc = "GGUFWriter(): build a GGUF v3 file in memory, then write(path).",
    .tp_methods = writer_methods,
    .tp_new = writer_new,
};

/* ======================================================================== */
/* GGUFReader                                                               */
/* ======================================================================== */

/* A read-only buffer over one tensor of an open reader; memoryviews of it
 * keep the reader alive, and the reader refuses close() while any exist. */
typedef struct BnpyTensorBuffer {
    PyObject_HEAD BnpyGGUFReader *reader;
    int64_t index;
} BnpyTensorBuffer;

static PyTypeObject BnpyTensorBuffer_Type;

const bn_gguf *bnpy_gguf_get(PyObject *obj) {
    if (!PyObject_TypeCheck(obj, &BnpyGGUFReader_Type)) {
        PyErr_Format(PyExc_TypeError, "expected a GGUFReader, not %.100s", Py_TYPE(obj)->tp_name);
        return NULL;
    }
    BnpyGGUFReader *r = (BnpyGGUFReader *)obj;
    if (!r->gguf) {
        PyErr_SetString(PyExc_ValueError, "GGUFReader is closed");
        return NULL;
    }
    return r->gguf;
}

static int tbuf_getbuffer(PyObject *obj, Py_buffer *view, int flags) {
    BnpyTensorBuffer *self = (BnpyTensorBuffer *)obj;
    const bn_gguf *g = self->reader->gguf;
    if (!g) {
        PyErr_SetString(PyExc_BufferError, "GGUFReader is closed");
        view->obj = NULL;
        return -1;
    }
    void *p = (void *)bn_gguf_tensor_data(g, self->index);
    uint64_t nb = bn_gguf_tensor_nbytes(g, self->index);
    if (PyBuffer_FillInfo(view, obj, p, (Py_ssize_t)nb, 1, flags) < 0) return -1;
    self->reader->exports++;
    return 0;
}

static void tbuf_releasebuffer(PyObject *obj, Py_buffer *view) {
    BnpyTensorBuffer *self = (BnpyTensorBuffer *)obj;
    self->reader->exports--;
}

static int tbuf_traverse(PyObject *obj, visitproc visit, void *arg) {
    BnpyTensorBuffer *self = (BnpyTensorBuffer *)obj;
    Py_VISIT(self->reader);
    return 0;
}

static void tbuf_dealloc(PyObject *obj) {
    BnpyTensorBuffer *self = (BnpyTensorBuffer *)obj;
    PyObject_GC_UnTrack(obj);
    Py_CLEAR(self->reader);
    Py_TYPE(obj)->tp_free(obj);
}

static PyBufferProcs tbuf_as_buffer = {tbuf_getbuffer, tbuf_releasebuffer};

static PyTypeObject BnpyTensorBuffer_Type = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "bitnet_py._core._TensorBuffer",
    .tp_basicsize = sizeof(BnpyTensorBuffer),
    .tp_dealloc = tbuf_dealloc,
    .tp_as_buffer = &tbuf_as_buffer,
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .tp_doc = "Read-only bytes of one tensor in a GGUFReader's mapping.",
    .tp_traverse = tbuf_traverse,
};

static PyObject *reader_new(PyTypeObject *type, PyObject *args, PyObject *kw) {
    static char *kwlist[] = {"path", NULL};
    PyObject *path_bytes = NULL;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "O&:GGUFReader", kwlist, PyUnicode_FSConverter,
                                     &path_bytes))
        return NULL;
    BnpyGGUFReader *self = (BnpyGGUFReader *)type->tp_alloc(type, 0);
    if (!self) {
        Py_DECREF(path_bytes);
        return NULL;
    }
    self->path = PyUnicode_DecodeFSDefault(PyBytes_AS_STRING(path_bytes));
    if (!self->path) {
        Py_DECREF(path_bytes);
        Py_DECREF(self);
        return NULL;
    }
    bn_error err = {0};
    bn_status st;
    bn_gguf *g = NULL;
    Py_BEGIN_ALLOW_THREADS st = bn_gguf_open(PyBytes_AS_STRING(path_bytes), &g, &err);
    Py_END_ALLOW_THREADS Py_DECREF(path_bytes);
    if (st != BN_OK) {
        raise_path(st, &err, self->path);
        Py_DECREF(self);
        return NULL;
    }
    self->gguf = g;
    return (PyObject *)self;
}

static void reader_dealloc(PyObject *obj) {
    BnpyGGUFReader *self = (BnpyGGUFReader *)obj;
    if (self->weakreflist) PyObject_ClearWeakRefs(obj);
    if (self->gguf) bn_gguf_close(self->gguf);
    Py_CLEAR(self->path);
    Py_TYPE(obj)->tp_free(obj);
}

static const bn_gguf *reader_get(BnpyGGUFReader *self) {
    if (!self->gguf) {
        PyErr_SetString(PyExc_ValueError, "GGUFReader is closed");
        return NULL;
    }
    return self->gguf;
}

static PyObject *reader_close(PyObject *obj, PyObject *unused) {
    BnpyGGUFReader *self = (BnpyGGUFReader *)obj;
    if (self->exports > 0) {
        PyErr_Format(PyExc_BufferError,
                     "cannot close GGUFReader: %zd memoryview(s) of its tensors still exist",
                     self->exports);
        return NULL;
    }
    if (self->gguf) {
        bn_gguf_close(self->gguf);
        self->gguf = NULL;
    }
    Py_RETURN_NONE;
}

static PyObject *self_enter(PyObject *obj, PyObject *unused) {
    Py_INCREF(obj);
    return obj;
}

static PyObject *reader_exit(PyObject *obj, PyObject *args) { return reader_close(obj, NULL); }

static int64_t reader_find_key(const bn_gguf *g, PyObject *key_obj) {
    const char *key = key_utf8(key_obj, "key");
    if (!key) return -2;
    return bn_gguf_find_key(g, key);
}

static PyObject *decode_str(const char *s, uint64_t len) {
    if (len > (uint64_t)PY_SSIZE_T_MAX) return PyErr_NoMemory();
    return PyUnicode_DecodeUTF8(s, (Py_ssize_t)len, "surrogateescape");
}

static PyObject *kv_scalar(const bn_gguf *g, int64_t i, bn_gguf_vtype vt) {
    bn_error err = {0};
    bn_status st;
    switch (vt) {
    case BN_GGUF_UINT8:
    case BN_GGUF_UINT16:
    case BN_GGUF_UINT32:
    case BN_GGUF_UINT64: {
        uint64_t u = 0;
        st = bn_gguf_get_u64(g, i, &u, &err);
        if (st != BN_OK) return bnpy_raise(st, &err);
        return PyLong_FromUnsignedLongLong(u);
    }
    case BN_GGUF_INT8:
    case BN_GGUF_INT16:
    case BN_GGUF_INT32:
    case BN_GGUF_INT64: {
        int64_t x = 0;
        st = bn_gguf_get_i64(g, i, &x, &err);
        if (st != BN_OK) return bnpy_raise(st, &err);
        return PyLong_FromLongLong(x);
    }
    case BN_GGUF_FLOAT32:
    case BN_GGUF_FLOAT64: {
        double d = 0;
        st = bn_gguf_get_f64(g, i, &d, &err);
        if (st != BN_OK) return bnpy_raise(st, &err);
        return PyFloat_FromDouble(d);
    }
    case BN_GGUF_BOOL: {
        int b = 0;
        st = bn_gguf_get_bool(g, i, &b, &err);
        if (st != BN_OK) return bnpy_raise(st, &err);
        return PyBool_FromLong(b);
    }
    case BN_GGUF_STRING: {
        const char *s = NULL;
        uint64_t len = 0;
        st = bn_gguf_get_str(g, i, &s, &len, &err);
        if (st != BN_OK) return bnpy_raise(st, &err);
        return decode_str(s, len);
    }
    default:
        return bnpy_raise_fmt(BN_ERR_UNSUPPORTED, "key '%s': value type %d is not supported",
                              bn_gguf_key(g, i), (int)vt);
    }
}

static PyObject *kv_value(const bn_gguf *g, int64_t i) {
    bn_gguf_vtype vt = bn_gguf_kv_type(g, i);
    if (vt != BN_GGUF_ARRAY) return kv_scalar(g, i, vt);
    bn_error err = {0};
    bn_gguf_vtype et;
    uint64_t n = 0;
    const void *data = NULL;
    bn_status st = bn_gguf_get_arr(g, i, &et, &n, &data, &err);
    if (st != BN_OK) return bnpy_raise(st, &err);
    if (n > (uint64_t)PY_SSIZE_T_MAX) return PyErr_NoMemory();
    if (et == BN_GGUF_STRING) {
        PyObject *list = PyList_New((Py_ssize_t)n);
        if (!list) return NULL;
        for (uint64_t j = 0; j < n; j++) {
            const char *s = NULL;
            uint64_t len = 0;
            st = bn_gguf_get_arr_str(g, i, j, &s, &len, &err);
            PyObject *item = st == BN_OK ? decode_str(s, len) : bnpy_raise(st, &err);
            if (!item) {
                Py_DECREF(list);
                return NULL;
            }
            PyList_SET_ITEM(list, (Py_ssize_t)j, item);
        }
        return list;
    }
    const vtype_info *ti = vtype_by_id(et);
    if (!ti || ti->kind == 's') {
        return bnpy_raise_fmt(BN_ERR_UNSUPPORTED,
                              "key '%s': arrays of element type %d are not supported",
                              bn_gguf_key(g, i), (int)et);
    }
    void *dst;
    Py_ssize_t shape[1] = {(Py_ssize_t)n};
    PyObject *arr = bnpy_empty(ti->dtype, 1, shape, &dst);
    if (!arr) return NULL;
    if (ti->kind == 'b') {
        const unsigned char *src = data;
        unsigned char *d = dst;
        for (uint64_t j = 0; j < n; j++)
            d[j] = src[j] != 0;
    } else if (n > 0) {
        memcpy(dst, data, (size_t)n * ti->size);
    }
    return arr;
}

static PyObject *reader_get_value(PyObject *obj, PyObject *args, PyObject *kw) {
    BnpyGGUFReader *self = (BnpyGGUFReader *)obj;
    static char *kwlist[] = {"key", "default", NULL};
    PyObject *key_obj, *dflt = NULL;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "O|O:get", kwlist, &key_obj, &dflt)) return NULL;
    const bn_gguf *g = reader_get(self);
    if (!g) return NULL;
    int64_t i = reader_find_key(g, key_obj);
    if (i == -2) return NULL;
    if (i < 0) {
        if (dflt) {
            Py_INCREF(dflt);
            return dflt;
        }
        PyErr_SetObject(PyExc_KeyError, key_obj);
        return NULL;
    }
    return kv_value(g, i);
}

static PyObject *reader_type_of(PyObject *obj, PyObject *key_obj) {
    BnpyGGUFReader *self = (BnpyGGUFReader *)obj;
    const bn_gguf *g = reader_get(self);
    if (!g) return NULL;
    int64_t i = reader_find_key(g, key_obj);
    if (i == -2) return NULL;
    if (i < 0) {
        PyErr_SetObject(PyExc_KeyError, key_obj);
        return NULL;
    }
    bn_gguf_vtype vt = bn_gguf_kv_type(g, i);
    if (vt == BN_GGUF_ARRAY) {
        bn_error err = {0};
        bn_gguf_vtype et;
        uint64_t n;
        const void *data;
        bn_status st = bn_gguf_get_arr(g, i, &et, &n, &data, &err);
        if (st != BN_OK) return bnpy_raise(st, &err);
        const vtype_info *ti = vtype_by_id(et);
        return PyUnicode_FromFormat("arr[%s]", ti ? ti->name : "arr");
    }
    const vtype_info *ti = vtype_by_id(vt);
    if (!ti) return bnpy_raise_fmt(BN_ERR_UNSUPPORTED, "value type %d", (int)vt);
    return PyUnicode_FromString(ti->name);
}

static PyObject *reader_keys(PyObject *obj, PyObject *unused) {
    BnpyGGUFReader *self = (BnpyGGUFReader *)obj;
    const bn_gguf *g = reader_get(self);
    if (!g) return NULL;
    int64_t n = bn_gguf_n_kv(g);
    PyObject *list = PyList_New((Py_ssize_t)n);
    if (!list) return NULL;
    for (int64_t i = 0; i < n; i++) {
        const char *k = bn_gguf_key(g, i);
        PyObject *s = decode_str(k, strlen(k));
        if (!s) {
            Py_DECREF(list);
            return NULL;
        }
        PyList_SET_ITEM(list, (Py_ssize_t)i, s);
    }
    return list;
}

static PyObject *tensor_dict(const bn_gguf *g, int64_t i) {
    int nd = bn_gguf_tensor_n_dims(g, i);
    PyObject *shape = PyTuple_New(nd);
    if (!shape) return NULL;
    for (int d = 0; d < nd; d++) {
        PyObject *x = PyLong_FromLongLong(bn_gguf_tensor_ne(g, i, d));
        if (!x) {
            Py_DECREF(shape);
            return NULL;
        }
        PyTuple_SET_ITEM(shape, d, x);
    }
    const char *name = bn_gguf_tensor_name(g, i);
    PyObject *name_obj = decode_str(name, strlen(name));
    if (!name_obj) {
        Py_DECREF(shape);
        return NULL;
    }
    int t = bn_gguf_tensor_type(g, i);
    return Py_BuildValue("{s:N,s:i,s:s,s:N,s:K,s:K}", "name", name_obj, "type", t, "type_name",
                         bn_type_name(t), "shape", shape, "offset",
                         (unsigned long long)bn_gguf_tensor_offset(g, i), "nbytes",
                         (unsigned long long)bn_gguf_tensor_nbytes(g, i));
}

static PyObject *reader_tensors(PyObject *obj, PyObject *unused) {
    BnpyGGUFReader *self = (BnpyGGUFReader *)obj;
    const bn_gguf *g = reader_get(self);
    if (!g) return NULL;
    int64_t n = bn_gguf_n_tensors(g);
    PyObject *list = PyList_New((Py_ssize_t)n);
    if (!list) return NULL;
    for (int64_t i = 0; i < n; i++) {
        PyObject *d = tensor_dict(g, i);
        if (!d) {
            Py_DECREF(list);
            return NULL;
        }
        PyList_SET_ITEM(list, (Py_ssize_t)i, d);
    }
    return list;
}

static PyObject *reader_tensor_bytes(PyObject *obj, PyObject *name_obj) {
    BnpyGGUFReader *self = (BnpyGGUFReader *)obj;
    const bn_gguf *g = reader_get(self);
    if (!g) return NULL;
    const char *name = key_utf8(name_obj, "tensor name");
    if (!name) return NULL;
    int64_t i = bn_gguf_find_tensor(g, name);
    if (i < 0) {
        PyErr_SetObject(PyExc_KeyError, name_obj);
        return NULL;
    }
    BnpyTensorBuffer *tb = PyObject_GC_New(BnpyTensorBuffer, &BnpyTensorBuffer_Type);
    if (!tb) return NULL;
    Py_INCREF(self);
    tb->reader = self;
    tb->index = i;
    PyObject_GC_Track((PyObject *)tb);
    PyObject *mv = PyMemoryView_FromObject((PyObject *)tb);
    Py_DECREF(tb);
    return mv;
}

static int reader_contains(PyObject *obj, PyObject *key_obj) {
    BnpyGGUFReader *self = (BnpyGGUFReader *)obj;
    const bn_gguf *g = reader_get(self);
    if (!g) return -1;
    if (!PyUnicode_Check(key_obj)) return 0;
    int64_t i = reader_find_key(g, key_obj);
    if (i == -2) return -1;
    return i >= 0;
}

#define READER_U64_GETTER(fname, cfn)                                                              \
    static PyObject *fname(PyObject *obj, void *closure) {                                         \
        const bn_gguf *g = reader_get((BnpyGGUFReader *)obj);                                      \
        if (!g) return NULL;                                                                       \
        return PyLong_FromUnsignedLongLong((unsigned long long)cfn(g));                            \
    }
READER_U64_GETTER(reader_version, bn_gguf_version)
READER_U64_GETTER(reader_alignment, bn_gguf_alignment)
READER_U64_GETTER(reader_data_offset, bn_gguf_data_offset)
READER_U64_GETTER(reader_file_size, bn_gguf_file_size)
READER_U64_GETTER(reader_n_kv, bn_gguf_n_kv)
READER_U64_GETTER(reader_n_tensors, bn_gguf_n_tensors)
#undef READER_U64_GETTER

static PyObject *reader_path(PyObject *obj, void *closure) {
    BnpyGGUFReader *self = (BnpyGGUFReader *)obj;
    if (!self->path) Py_RETURN_NONE;
    Py_INCREF(self->path);
    return self->path;
}

static PyObject *reader_closed(PyObject *obj, void *closure) {
    return PyBool_FromLong(((BnpyGGUFReader *)obj)->gguf == NULL);
}

static PyObject *reader_repr(PyObject *obj) {
    BnpyGGUFReader *self = (BnpyGGUFReader *)obj;
    if (!self->gguf) return PyUnicode_FromFormat("<GGUFReader %R (closed)>", self->path);
    return PyUnicode_FromFormat("<GGUFReader %R v%u, %lld keys, %lld tensors>", self->path,
                                (unsigned)bn_gguf_version(self->gguf),
                                (long long)bn_gguf_n_kv(self->gguf),
                                (long long)bn_gguf_n_tensors(self->gguf));
}

static PyMethodDef reader_methods[] = {
    {"keys", reader_keys, METH_NOARGS, "keys() -> list of metadata keys, in file order."},
    {"get", (PyCFunction)(void (*)(void))reader_get_value, METH_VARARGS | METH_KEYWORDS,
     "get(key[, default]): the value (int, float, bool, str, list[str] for string arrays, "
     "numpy array for numeric arrays); KeyError when absent and no default."},
    {"type_of", reader_type_of, METH_O,
     "type_of(key) -> 'u8' ... 'f64', 'bool', 'str', or 'arr[<elem>]' for arrays."},
    {"tensors", reader_tensors, METH_NOARGS,
     "tensors() -> list of {name, type, type_name, shape (ggml order), offset (from "
     "data_offset), nbytes}."},
    {"tensor_bytes", reader_tensor_bytes, METH_O,
     "tensor_bytes(name) -> read-only memoryview of the tensor's bytes in the mapping "
     "(zero-copy; keeps the reader alive)."},
    {"close", reader_close, METH_NOARGS,
     "close(): unmap the file (BufferError while tensor memoryviews exist)."},
    {"__enter__", self_enter, METH_NOARGS, NULL},
    {"__exit__", reader_exit, METH_VARARGS, NULL},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef reader_getset[] = {
    {"version", reader_version, NULL, "GGUF version (2 or 3).", NULL},
    {"alignment", reader_alignment, NULL, "Alignment of tensor data.", NULL},
    {"data_offset", reader_data_offset, NULL, "File offset of the tensor data.", NULL},
    {"file_size", reader_file_size, NULL, "File size in bytes.", NULL},
    {"n_kv", reader_n_kv, NULL, "Number of metadata keys.", NULL},
    {"n_tensors", reader_n_tensors, NULL, "Number of tensors.", NULL},
    {"path", reader_path, NULL, "The path it was opened with.", NULL},
    {"closed", reader_closed, NULL, "True after close().", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PySequenceMethods reader_as_sequence = {
    .sq_contains = reader_contains,
};

PyTypeObject BnpyGGUFReader_Type = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "bitnet_py._core.GGUFReader",
    .tp_basicsize = sizeof(BnpyGGUFReader),
    .tp_dealloc = reader_dealloc,
    .tp_repr = reader_repr,
    .tp_as_sequence = &reader_as_sequence,
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE,
    .tp_doc = "GGUFReader(path): a memory-mapped, validated GGUF v2/v3 file.",
    .tp_weaklistoffset = offsetof(BnpyGGUFReader, weakreflist),
    .tp_methods = reader_methods,
    .tp_getset = reader_getset,
    .tp_new = reader_new,
};

/* ======================================================================== */
/* Model                                                                    */
/* ======================================================================== */

static BnpyModel *model_check(PyObject *obj) {
    if (!PyObject_TypeCheck(obj, &BnpyModel_Type)) {
        PyErr_Format(PyExc_TypeError, "expected a Model, not %.100s", Py_TYPE(obj)->tp_name);
        return NULL;
    }
    BnpyModel *m = (BnpyModel *)obj;
    if (!m->model || m->closed) {
        PyErr_SetString(PyExc_ValueError, "Model is closed");
        return NULL;
    }
    return m;
}

const bn_model *bnpy_model_get(PyObject *obj) {
    BnpyModel *m = model_check(obj);
    return m ? m->model : NULL;
}

const bn_model *bnpy_model_acquire(PyObject *obj) {
    BnpyModel *m = model_check(obj);
    if (!m) return NULL;
    m->users++;
    return m->model;
}

void bnpy_model_release(PyObject *obj) {
    BnpyModel *m = (BnpyModel *)obj;
    if (m->users > 0) m->users--;
    if (m->users == 0 && m->closed && m->model) {
        bn_model_free(m->model);
        m->model = NULL;
    }
}

static PyObject *model_new(PyTypeObject *type, PyObject *args, PyObject *kw) {
    static char *kwlist[] = {"path", "use_mmap", "n_layers", NULL};
    PyObject *path_bytes = NULL;
    int use_mmap = 1, n_layers = 0;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "O&|pi:Model", kwlist, PyUnicode_FSConverter,
                                     &path_bytes, &use_mmap, &n_layers))
        return NULL;
    if (n_layers < 0) {
        Py_DECREF(path_bytes);
        return bnpy_raise_fmt(BN_ERR_INVALID_ARG, "n_layers must be >= 0, not %d", n_layers);
    }
    BnpyModel *self = (BnpyModel *)type->tp_alloc(type, 0);
    if (!self) {
        Py_DECREF(path_bytes);
        return NULL;
    }
    self->path = PyUnicode_DecodeFSDefault(PyBytes_AS_STRING(path_bytes));
    if (!self->path) {
        Py_DECREF(path_bytes);
        Py_DECREF(self);
        return NULL;
    }
    bn_model_params p = bn_model_default_params();
    p.use_mmap = use_mmap;
    p.n_layers = n_layers;
    bn_error err = {0};
    bn_status st;
    bn_model *m = NULL;
    Py_BEGIN_ALLOW_THREADS st = bn_model_load(PyBytes_AS_STRING(path_bytes), &p, &m, &err);
    Py_END_ALLOW_THREADS Py_DECREF(path_bytes);
    if (st != BN_OK) {
        raise_path(st, &err, self->path);
        Py_DECREF(self);
        return NULL;
    }
    self->model = m;
    return (PyObject *)self;
}

static void model_dealloc(PyObject *obj) {
    BnpyModel *self = (BnpyModel *)obj;
    if (self->weakreflist) PyObject_ClearWeakRefs(obj);
    /* Borrowers hold strong references, so users is 0 here; if a borrower
     * broke that rule, leaking is safer than freeing under it. */
    if (self->model && self->users == 0) bn_model_free(self->model);
    self->model = NULL;
    Py_CLEAR(self->path);
    Py_TYPE(obj)->tp_free(obj);
}

static PyObject *model_close(PyObject *obj, PyObject *unused) {
    BnpyModel *self = (BnpyModel *)obj;
    self->closed = 1;
    if (self->users == 0 && self->model) {
        bn_model_free(self->model);
        self->model = NULL;
    }
    Py_RETURN_NONE;
}

static PyObject *model_exit(PyObject *obj, PyObject *args) { return model_close(obj, NULL); }

/* The shortest decimal that reads back as the same float32, as a double
 * (norm_eps 1e-05 rather than 9.999999747378752e-06). */
static double f32_shortest(float f) {
    for (int prec = 1; prec <= 9; prec++) {
        char *s = PyOS_double_to_string((double)f, 'g', prec, 0, NULL);
        if (!s) break;
        double d = PyOS_string_to_double(s, NULL, NULL);
        PyMem_Free(s);
        if (d == -1.0 && PyErr_Occurred()) {
            PyErr_Clear();
            break;
        }
        if ((float)d == f) return d;
    }
    return (double)f;
}

static PyObject *model_config(PyObject *obj, void *closure) {
    const bn_model *m = bnpy_model_get(obj);
    if (!m) return NULL;
    bn_model_config c;
    memset(&c, 0, sizeof c);
    bn_model_get_config(m, &c);
    c.arch[sizeof c.arch - 1] = '\0';
    return Py_BuildValue(
        "{s:s,s:i,s:i,s:i,s:i,s:i,s:i,s:i,s:i,s:d,s:d,s:i,s:s,s:O,s:s,s:s,s:s}", "arch", c.arch,
        "n_vocab", (int)c.n_vocab, "n_ctx_train", (int)c.n_ctx_train, "n_embd", (int)c.n_embd,
        "n_layer", (int)c.n_layer, "n_head", (int)c.n_head, "n_head_kv", (int)c.n_head_kv,
        "head_dim", (int)c.head_dim, "n_ff", (int)c.n_ff, "norm_eps", f32_shortest(c.norm_eps),
        "rope_theta", f32_shortest(c.rope_theta), "rope_dim", (int)c.rope_dim, "ffn_act",
        c.ffn_act == 1 ? "relu2" : "silu", "tied_output", c.tied_output ? Py_True : Py_False,
        "weight_type", bn_type_name(c.weight_type), "embd_type", bn_type_name(c.embd_type),
        "output_type", bn_type_name(c.output_type));
}

static PyObject *model_n_params(PyObject *obj, void *closure) {
    const bn_model *m = bnpy_model_get(obj);
    return m ? PyLong_FromLongLong(bn_model_n_params(m)) : NULL;
}

static PyObject *model_weight_bytes(PyObject *obj, void *closure) {
    const bn_model *m = bnpy_model_get(obj);
    return m ? PyLong_FromUnsignedLongLong(bn_model_weight_bytes(m)) : NULL;
}

static PyObject *model_has_tokenizer(PyObject *obj, void *closure) {
    const bn_model *m = bnpy_model_get(obj);
    return m ? PyBool_FromLong(bn_model_tokenizer(m) != NULL) : NULL;
}

static PyObject *model_n_vocab(PyObject *obj, void *closure) {
    const bn_model *m = bnpy_model_get(obj);
    if (!m) return NULL;
    bn_model_config c;
    bn_model_get_config(m, &c);
    return PyLong_FromLong(c.n_vocab);
}

static PyObject *model_path(PyObject *obj, void *closure) {
    BnpyModel *self = (BnpyModel *)obj;
    if (!self->path) Py_RETURN_NONE;
    Py_INCREF(self->path);
    return self->path;
}

static PyObject *model_closed(PyObject *obj, void *closure) {
    BnpyModel *self = (BnpyModel *)obj;
    return PyBool_FromLong(self->closed || !self->model);
}

/* The model file's metadata: get_metadata(key[, default]). */
static PyObject *model_get_metadata(PyObject *obj, PyObject *args, PyObject *kw) {
    static char *kwlist[] = {"key", "default", NULL};
    PyObject *key_obj, *dflt = NULL;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "O|O:get_metadata", kwlist, &key_obj, &dflt))
        return NULL;
    const bn_model *m = bnpy_model_get(obj);
    if (!m) return NULL;
    const bn_gguf *g = bn_model_gguf(m);
    if (!g) return bnpy_raise_fmt(BN_ERR_INTERNAL, "model has no metadata");
    int64_t i = reader_find_key(g, key_obj);
    if (i == -2) return NULL;
    if (i < 0) {
        if (dflt) {
            Py_INCREF(dflt);
            return dflt;
        }
        PyErr_SetObject(PyExc_KeyError, key_obj);
        return NULL;
    }
    return kv_value(g, i);
}

static PyObject *model_repr(PyObject *obj) {
    BnpyModel *self = (BnpyModel *)obj;
    if (self->closed || !self->model)
        return PyUnicode_FromFormat("<Model %R (closed)>", self->path);
    bn_model_config c;
    bn_model_get_config(self->model, &c);
    c.arch[sizeof c.arch - 1] = '\0';
    return PyUnicode_FromFormat("<Model %R arch=%s n_layer=%d n_embd=%d n_vocab=%d>", self->path,
                                c.arch, (int)c.n_layer, (int)c.n_embd, (int)c.n_vocab);
}

static PyMethodDef model_methods[] = {
    {"close", model_close, METH_NOARGS,
     "close(): release the weights (deferred while contexts still use them)."},
    {"get_metadata", (PyCFunction)(void (*)(void))model_get_metadata, METH_VARARGS | METH_KEYWORDS,
     "get_metadata(key[, default]): a value of the model file's metadata (as GGUFReader.get)."},
    {"__enter__", self_enter, METH_NOARGS, NULL},
    {"__exit__", model_exit, METH_VARARGS, NULL},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef model_getset[] = {
    {"config", model_config, NULL, "The model's hyperparameters (dict).", NULL},
    {"n_params", model_n_params, NULL, "Number of parameters.", NULL},
    {"weight_bytes", model_weight_bytes, NULL, "Bytes of weights read per token.", NULL},
    {"has_tokenizer", model_has_tokenizer, NULL, "True when the file holds a vocabulary.", NULL},
    {"n_vocab", model_n_vocab, NULL, "Vocabulary size.", NULL},
    {"path", model_path, NULL, "The path it was loaded from.", NULL},
    {"closed", model_closed, NULL, "True after close().", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

PyTypeObject BnpyModel_Type = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "bitnet_py._core.Model",
    .tp_basicsize = sizeof(BnpyModel),
    .tp_dealloc = model_dealloc,
    .tp_repr = model_repr,
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE,
    .tp_doc = "Model(path, use_mmap=True, n_layers=0): load a GGUF model.",
    .tp_weaklistoffset = offsetof(BnpyModel, weakreflist),
    .tp_methods = model_methods,
    .tp_getset = model_getset,
    .tp_new = model_new,
};

/* ======================================================================== */
/* Context                                                                  */
/* ======================================================================== */

static int ctx_abort_cb(void *user) {
    return atomic_load_explicit((atomic_int *)user, memory_order_relaxed) != 0;
}

static PyObject *ctx_new(PyTypeObject *type, PyObject *args, PyObject *kw) {
    static char *kwlist[] = {"model", "n_ctx", "n_seq", "n_batch", "n_threads", "kv_type", NULL};
    PyObject *model_obj, *kv_obj = NULL;
    int n_ctx = 0, n_seq = 1, n_batch = 0, n_threads = 0;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "O|iiii$O:Context", kwlist, &model_obj, &n_ctx,
                                     &n_seq, &n_batch, &n_threads, &kv_obj))
        return NULL;
    int kv_f16 = 0;
    if (kv_obj && kv_obj != Py_None) {
        if (!PyUnicode_Check(kv_obj)) {
            return PyErr_Format(PyExc_TypeError, "kv_type must be 'f32' or 'f16', not %.100s",
                                Py_TYPE(kv_obj)->tp_name);
        }
        const char *kvs = PyUnicode_AsUTF8(kv_obj);
        if (!kvs) return NULL;
        if (strcmp(kvs, "f16") == 0) {
            kv_f16 = 1;
        } else if (strcmp(kvs, "f32") != 0) {
            return bnpy_raise_fmt(BN_ERR_INVALID_ARG,
                                  "kv_type must be 'f32' or 'f16', not '%.100s'", kvs);
        }
    }
    if (n_ctx < 0 || n_seq < 1 || n_batch < 0 || n_threads < 0) {
        return bnpy_raise_fmt(BN_ERR_INVALID_ARG,
                              "invalid context parameters: n_ctx=%d n_seq=%d n_batch=%d "
                              "n_threads=%d (n_seq >= 1, others >= 0)",
                              n_ctx, n_seq, n_batch, n_threads);
    }
    const bn_model *m = bnpy_model_get(model_obj);
    if (!m) return NULL;
    BnpyContext *self = (BnpyContext *)type->tp_alloc(type, 0);
    if (!self) return NULL;
    atomic_init(&self->abort_flag, 0);
    bnpy_model_acquire(model_obj);
    Py_INCREF(model_obj);
    self->model = (BnpyModel *)model_obj;
    bn_model_config cfg;
    bn_model_get_config(m, &cfg);
    self->n_vocab = cfg.n_vocab;
    self->n_batch = n_batch > 0 ? n_batch : 512;
    self->kv_f16 = kv_f16;

    bn_context_params p = bn_context_default_params();
    p.n_ctx = n_ctx;
    p.n_seq = n_seq;
    p.n_batch = n_batch;
    p.n_threads = n_threads;
    p.kv_type = kv_f16 ? BN_KV_F16 : BN_KV_F32;
    bn_error err = {0};
    bn_status st;
    bn_context *c = NULL;
    Py_BEGIN_ALLOW_THREADS st = bn_context_new(m, &p, &c, &err);
    Py_END_ALLOW_THREADS if (st != BN_OK) {
        Py_DECREF(self);
        return bnpy_raise(st, &err);
    }
    self->ctx = c;
    /* The library caps a batch at n_ctx too; eval() splits by the smaller. */
    int32_t cap = bn_context_n_ctx(c);
    if (cap > 0 && self->n_batch > cap) self->n_batch = cap;
    bn_context_set_abort(c, ctx_abort_cb, &self->abort_flag);
    return (PyObject *)self;
}

static void ctx_release(BnpyContext *self) {
    if (self->ctx) {
        bn_context_free(self->ctx);
        self->ctx = NULL;
    }
    if (self->model) {
        BnpyModel *m = self->model;
        self->model = NULL;
        bnpy_model_release((PyObject *)m);
        Py_DECREF(m);
    }
}

static int ctx_traverse(PyObject *obj, visitproc visit, void *arg) {
    BnpyContext *self = (BnpyContext *)obj;
    Py_VISIT(self->model);
    return 0;
}

static int ctx_clear(PyObject *obj) {
    BnpyContext *self = (BnpyContext *)obj;
    if (!self->busy) ctx_release(self);
    return 0;
}

static void ctx_dealloc(PyObject *obj) {
    BnpyContext *self = (BnpyContext *)obj;
    PyObject_GC_UnTrack(obj);
    if (self->weakreflist) PyObject_ClearWeakRefs(obj);
    ctx_release(self);
    Py_TYPE(obj)->tp_free(obj);
}

static bn_context *ctx_get(BnpyContext *self) {
    if (self->busy) {
        PyErr_SetString(bnpy_InferenceError,
                        "Context is in use by another thread (a Context serves one thread at "
                        "a time)");
        return NULL;
    }
    if (!self->ctx) {
        PyErr_SetString(PyExc_ValueError, "Context is closed");
        return NULL;
    }
    return self->ctx;
}

static int check_seq(BnpyContext *self, long seq, const char *what) {
    int32_t n_seq = bn_context_n_seq(self->ctx);
    if (seq < 0 || seq >= n_seq) {
        bnpy_raise_fmt(BN_ERR_RANGE, "%s %ld is out of range [0, %d)", what, seq, (int)n_seq);
        return -1;
    }
    return 0;
}

/* After a failed decode, put each sequence back to its length before the
 * call (the library may have cached part of the batch). */
static void restore_kv(bn_context *c, const int32_t *lens, int32_t n_seq) {
    for (int32_t s = 0; s < n_seq; s++) {
        if (bn_kv_seq_len(c, s) > lens[s]) bn_kv_seq_truncate(c, s, lens[s], NULL);
    }
}

static PyObject *ctx_finish_error(BnpyContext *self, bn_status st, const bn_error *err) {
    if (st == BN_ERR_CANCELLED) atomic_store(&self->abort_flag, 0); /* consumed */
    return bnpy_raise(st, err);
}

static PyObject *ctx_eval(PyObject *obj, PyObject *args, PyObject *kw) {
    BnpyContext *self = (BnpyContext *)obj;
    static char *kwlist[] = {"tokens", "seq_id", "logits", NULL};
    PyObject *tokens;
    int seq_id = 0;
    const char *mode = "last";
    if (!PyArg_ParseTupleAndKeywords(args, kw, "O|is:eval", kwlist, &tokens, &seq_id, &mode))
        return NULL;
    bn_context *c = ctx_get(self);
    if (!c) return NULL;
    int all;
    if (strcmp(mode, "last") == 0) {
        all = 0;
    } else if (strcmp(mode, "all") == 0) {
        all = 1;
    } else {
        return bnpy_raise_fmt(BN_ERR_INVALID_ARG, "logits must be 'last' or 'all', not '%.32s'",
                              mode);
    }
    if (check_seq(self, seq_id, "seq_id") < 0) return NULL;
    int32_t *ids = NULL;
    Py_ssize_t n = 0;
    if (bnpy_get_i32_seq(tokens, "tokens", &ids, &n) < 0) return NULL;
    if (n == 0) {
        PyMem_Free(ids);
        return bnpy_raise_fmt(BN_ERR_INVALID_ARG, "tokens is empty");
    }
    int32_t nb = self->n_batch;
    int32_t V = self->n_vocab;
    int32_t *seqs = PyMem_Malloc((size_t)nb * sizeof(int32_t));
    int8_t *flags = PyMem_Malloc((size_t)nb);
    if (!seqs || !flags) {
        PyMem_Free(ids);
        PyMem_Free(seqs);
        PyMem_Free(flags);
        return PyErr_NoMemory();
    }
    for (int32_t j = 0; j < nb; j++)
        seqs[j] = seq_id;
    float *dst;
    Py_ssize_t shape[2] = {all ? n : 1, V};
    PyObject *out = bnpy_empty("float32", 2, shape, (void **)&dst);
    if (!out) {
        PyMem_Free(ids);
        PyMem_Free(seqs);
        PyMem_Free(flags);
        return NULL;
    }
    bn_error err = {0};
    bn_status st = BN_OK;
    self->busy = 1;
    Py_BEGIN_ALLOW_THREADS int32_t start = bn_kv_seq_len(c, seq_id);
    for (Py_ssize_t off = 0; off < n && st == BN_OK; off += nb) {
        int32_t m = (int32_t)((n - off) < nb ? (n - off) : nb);
        int last_chunk = off + m == n;
        for (int32_t j = 0; j < m; j++)
            flags[j] = (int8_t)(all || (last_chunk && j == m - 1));
        bn_batch b = {m, ids + off, NULL, seqs, flags};
        st = bn_decode(c, &b, &err);
        if (st != BN_OK) break;
        for (int32_t j = 0; j < m; j++) {
            if (!flags[j]) continue;
            const float *lg = bn_get_logits(c, j);
            if (!lg) {
                st = BN_ERR_INTERNAL;
                snprintf(err.msg, sizeof err.msg, "no logits for batch token %d", (int)j);
                break;
            }
            float *row = all ? dst + (size_t)(off + j) * (size_t)V : dst;
            memcpy(row, lg, (size_t)V * sizeof(float));
        }
    }
    if (st != BN_OK && bn_kv_seq_len(c, seq_id) > start) bn_kv_seq_truncate(c, seq_id, start, NULL);
    Py_END_ALLOW_THREADS self->busy = 0;
    PyMem_Free(ids);
    PyMem_Free(seqs);
    PyMem_Free(flags);
    if (st != BN_OK) {
        Py_DECREF(out);
        return ctx_finish_error(self, st, &err);
    }
    return out;
}

/* An int32 list argument of length n: None -> *out NULL; an int -> n copies. */
static int opt_i32_arg(PyObject *obj, Py_ssize_t n, const char *what, int32_t **out) {
    *out = NULL;
    if (obj == NULL || obj == Py_None) return 0;
    if (PyLong_Check(obj)) {
        long v = PyLong_AsLong(obj);
        if (v == -1 && PyErr_Occurred()) return -1;
        if (v < INT32_MIN || v > INT32_MAX) {
            bnpy_raise_fmt(BN_ERR_RANGE, "%s %ld does not fit in int32", what, v);
            return -1;
        }
        int32_t *a = PyMem_Malloc((size_t)(n > 0 ? n : 1) * sizeof(int32_t));
        if (!a) {
            PyErr_NoMemory();
            return -1;
        }
        for (Py_ssize_t i = 0; i < n; i++)
            a[i] = (int32_t)v;
        *out = a;
        return 0;
    }
    Py_ssize_t m;
    if (bnpy_get_i32_seq(obj, what, out, &m) < 0) return -1;
    if (m != n) {
        PyMem_Free(*out);
        *out = NULL;
        bnpy_raise_fmt(BN_ERR_INVALID_ARG, "%s has %zd entries, tokens has %zd", what, m, n);
        return -1;
    }
    return 0;
}

static PyObject *ctx_decode(PyObject *obj, PyObject *args, PyObject *kw) {
    BnpyContext *self = (BnpyContext *)obj;
    static char *kwlist[] = {"tokens", "pos", "seq_ids", "want_logits", NULL};
    PyObject *tokens, *pos_obj = Py_None, *seq_obj = Py_None, *want_obj = Py_None;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "O|OOO:decode", kwlist, &tokens, &pos_obj, &seq_obj,
                                     &want_obj))
        return NULL;
    bn_context *c = ctx_get(self);
    if (!c) return NULL;
    int32_t *ids = NULL, *pos = NULL, *seqs = NULL, *want = NULL, *lens = NULL;
    int8_t *flags = NULL;
    PyObject *out = NULL;
    Py_ssize_t n = 0;
    if (bnpy_get_i32_seq(tokens, "tokens", &ids, &n) < 0) goto done;
    if (n == 0) {
        bnpy_raise_fmt(BN_ERR_INVALID_ARG, "tokens is empty");
        goto done;
    }
    if (n > INT32_MAX) {
        bnpy_raise_fmt(BN_ERR_RANGE, "batch of %zd tokens is too large", n);
        goto done;
    }
    if (opt_i32_arg(pos_obj, n, "pos", &pos) < 0) goto done;
    if (opt_i32_arg(seq_obj, n, "seq_ids", &seqs) < 0) goto done;
    if (want_obj == Py_True) {
        want_obj = Py_None;
        flags = PyMem_Malloc((size_t)n);
        if (!flags) {
            PyErr_NoMemory();
            goto done;
        }
        memset(flags, 1, (size_t)n);
    } else if (want_obj != Py_None) {
        if (opt_i32_arg(want_obj, n, "want_logits", &want) < 0) goto done;
        flags = PyMem_Malloc((size_t)n);
        if (!flags) {
            PyErr_NoMemory();
            goto done;
        }
        for (Py_ssize_t i = 0; i < n; i++)
            flags[i] = want[i] != 0;
    }
    int32_t n_seq = bn_context_n_seq(c);
    if (seqs) {
        for (Py_ssize_t i = 0; i < n; i++) {
            if (check_seq(self, seqs[i], "seq_ids entry") < 0) goto done;
        }
    }
    Py_ssize_t n_out = 0;
    if (flags) {
        for (Py_ssize_t i = 0; i < n; i++)
            n_out += flags[i] != 0;
    } else {
        n_out = 1;
    }
    lens = PyMem_Malloc((size_t)n_seq * sizeof(int32_t));
    if (!lens) {
        PyErr_NoMemory();
        goto done;
    }
    int32_t V = self->n_vocab;
    float *dst;
    Py_ssize_t shape[2] = {n_out, V};
    out = bnpy_empty("float32", 2, shape, (void **)&dst);
    if (!out) goto done;
    bn_error err = {0};
    bn_status st;
    self->busy = 1;
    Py_BEGIN_ALLOW_THREADS for (int32_t s = 0; s < n_seq; s++) lens[s] = bn_kv_seq_len(c, s);
    bn_batch b = {(int32_t)n, ids, pos, seqs, flags};
    st = bn_decode(c, &b, &err);
    if (st == BN_OK) {
        Py_ssize_t k = 0;
        for (int32_t i = 0; i < (int32_t)n && st == BN_OK; i++) {
            int wanted = flags ? flags[i] != 0 : i == (int32_t)n - 1;
            if (!wanted) continue;
            const float *lg = bn_get_logits(c, i);
            if (!lg) {
                st = BN_ERR_INTERNAL;
                snprintf(err.msg, sizeof err.msg, "no logits for batch token %d", (int)i);
                break;
            }
            memcpy(dst + (size_t)k * (size_t)V, lg, (size_t)V * sizeof(float));
            k++;
        }
    }
    if (st != BN_OK) restore_kv(c, lens, n_seq);
    Py_END_ALLOW_THREADS self->busy = 0;
    if (st != BN_OK) {
        Py_CLEAR(out);
        ctx_finish_error(self, st, &err);
    }
done:
    PyMem_Free(ids);
    PyMem_Free(pos);
    PyMem_Free(seqs);
    PyMem_Free(want);
    PyMem_Free(flags);
    PyMem_Free(lens);
    return out;
}

static PyObject *ctx_kv_seq_len(PyObject *obj, PyObject *arg) {
    BnpyContext *self = (BnpyContext *)obj;
    bn_context *c = ctx_get(self);
    if (!c) return NULL;
    long seq = PyLong_AsLong(arg);
    if (seq == -1 && PyErr_Occurred()) return NULL;
    if (check_seq(self, seq, "seq_id") < 0) return NULL;
    return PyLong_FromLong(bn_kv_seq_len(c, (int32_t)seq));
}

static PyObject *ctx_kv_truncate(PyObject *obj, PyObject *args, PyObject *kw) {
    BnpyContext *self = (BnpyContext *)obj;
    static char *kwlist[] = {"seq_id", "n_keep", NULL};
    int seq, n_keep = 0;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "i|i:kv_truncate", kwlist, &seq, &n_keep))
        return NULL;
    bn_context *c = ctx_get(self);
    if (!c) return NULL;
    if (check_seq(self, seq, "seq_id") < 0) return NULL;
    bn_error err = {0};
    bn_status st = bn_kv_seq_truncate(c, seq, n_keep, &err);
    if (st != BN_OK) return bnpy_raise(st, &err);
    Py_RETURN_NONE;
}

static PyObject *ctx_kv_copy(PyObject *obj, PyObject *args, PyObject *kw) {
    BnpyContext *self = (BnpyContext *)obj;
    static char *kwlist[] = {"src", "dst", "n", NULL};
    int src, dst, n = -1;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "ii|i:kv_copy", kwlist, &src, &dst, &n)) return NULL;
    bn_context *c = ctx_get(self);
    if (!c) return NULL;
    if (check_seq(self, src, "src") < 0 || check_seq(self, dst, "dst") < 0) return NULL;
    if (n < 0) n = bn_kv_seq_len(c, src);
    bn_error err = {0};
    bn_status st;
    self->busy = 1;
    Py_BEGIN_ALLOW_THREADS st = bn_kv_seq_copy(c, src, dst, n, &err);
    Py_END_ALLOW_THREADS self->busy = 0;
    if (st != BN_OK) return bnpy_raise(st, &err);
    Py_RETURN_NONE;
}

static PyObject *ctx_set_threads(PyObject *obj, PyObject *arg) {
    BnpyContext *self = (BnpyContext *)obj;
    bn_context *c = ctx_get(self);
    if (!c) return NULL;
    long n = PyLong_AsLong(arg);
    if (n == -1 && PyErr_Occurred()) return NULL;
    if (n < 0 || n > INT32_MAX) return bnpy_raise_fmt(BN_ERR_INVALID_ARG, "n_threads %ld", n);
    bn_error err = {0};
    bn_status st = bn_context_set_threads(c, (int32_t)n, &err);
    if (st != BN_OK) return bnpy_raise(st, &err);
    Py_RETURN_NONE;
}

/* cancel() and set_abort() only touch the atomic flag, so they work from any
 * thread while another is inside eval/decode. */
static PyObject *ctx_cancel(PyObject *obj, PyObject *unused) {
    BnpyContext *self = (BnpyContext *)obj;
    atomic_store(&self->abort_flag, 1);
    Py_RETURN_NONE;
}

static PyObject *ctx_set_abort(PyObject *obj, PyObject *arg) {
    BnpyContext *self = (BnpyContext *)obj;
    int v = PyObject_IsTrue(arg);
    if (v < 0) return NULL;
    atomic_store(&self->abort_flag, v);
    Py_RETURN_NONE;
}

static PyObject *ctx_close(PyObject *obj, PyObject *unused) {
    BnpyContext *self = (BnpyContext *)obj;
    if (self->busy) {
        PyErr_SetString(bnpy_InferenceError, "cannot close a Context while another thread uses it");
        return NULL;
    }
    ctx_release(self);
    Py_RETURN_NONE;
}

static PyObject *ctx_exit(PyObject *obj, PyObject *args) { return ctx_close(obj, NULL); }

static PyObject *ctx_cancelled(PyObject *obj, void *closure) {
    BnpyContext *self = (BnpyContext *)obj;
    return PyBool_FromLong(atomic_load(&self->abort_flag) != 0);
}

static PyObject *ctx_model(PyObject *obj, void *closure) {
    BnpyContext *self = (BnpyContext *)obj;
    if (!self->model) Py_RETURN_NONE;
    Py_INCREF(self->model);
    return (PyObject *)self->model;
}

static PyObject *ctx_closed(PyObject *obj, void *closure) {
    return PyBool_FromLong(((BnpyContext *)obj)->ctx == NULL);
}

/* Getters that do not need exclusive use (plain reads of fixed sizes). */
static bn_context *ctx_get_ro(BnpyContext *self) {
    if (!self->ctx) {
        PyErr_SetString(PyExc_ValueError, "Context is closed");
        return NULL;
    }
    return self->ctx;
}

#define CTX_GETTER(fname, expr)                                                                    \
    static PyObject *fname(PyObject *obj, void *closure) {                                         \
        BnpyContext *self = (BnpyContext *)obj;                                                    \
        bn_context *c = ctx_get_ro(self);                                                          \
        if (!c) return NULL;                                                                       \
        return expr;                                                                               \
    }
CTX_GETTER(ctx_n_ctx, PyLong_FromLong(bn_context_n_ctx(c)))
CTX_GETTER(ctx_n_seq, PyLong_FromLong(bn_context_n_seq(c)))
CTX_GETTER(ctx_n_vocab, PyLong_FromLong(self->n_vocab))
CTX_GETTER(ctx_n_batch, PyLong_FromLong(self->n_batch))
CTX_GETTER(ctx_kv_bytes, PyLong_FromUnsignedLongLong(bn_context_kv_bytes(c)))
CTX_GETTER(ctx_kv_type, PyUnicode_FromString(self->kv_f16 ? "f16" : "f32"))
CTX_GETTER(ctx_scratch_bytes, PyLong_FromUnsignedLongLong(bn_context_scratch_bytes(c)))
#undef CTX_GETTER

static PyMethodDef ctx_methods[] = {
    {"eval", (PyCFunction)(void (*)(void))ctx_eval, METH_VARARGS | METH_KEYWORDS,
     "eval(tokens, seq_id=0, logits='last') -> float32 array [1 or len(tokens), n_vocab].\n"
     "Positions continue the sequence; batches longer than n_batch are split. On error the "
     "sequence's KV cache is left as it was."},
    {"decode", (PyCFunction)(void (*)(void))ctx_decode, METH_VARARGS | METH_KEYWORDS,
     "decode(tokens, pos=None, seq_ids=None, want_logits=None) -> float32 array "
     "[n_wanted, n_vocab]: one bn_decode call (at most n_batch tokens, several sequences). "
     "pos None continues each sequence; seq_ids None is sequence 0 (an int applies to all); "
     "want_logits None asks for the last token only, True for all, else one flag per token. "
     "Rows follow batch order of the wanted tokens."},
    {"kv_seq_len", ctx_kv_seq_len, METH_O, "kv_seq_len(seq_id) -> tokens cached."},
    {"kv_truncate", (PyCFunction)(void (*)(void))ctx_kv_truncate, METH_VARARGS | METH_KEYWORDS,
     "kv_truncate(seq_id, n_keep=0): forget positions >= n_keep."},
    {"kv_copy", (PyCFunction)(void (*)(void))ctx_kv_copy, METH_VARARGS | METH_KEYWORDS,
     "kv_copy(src, dst, n=-1): copy the first n cached positions (all: -1) of src into dst."},
    {"set_threads", ctx_set_threads, METH_O, "set_threads(n): 0 = all cores."},
    {"cancel", ctx_cancel, METH_NOARGS,
     "cancel(): ask a running (or the next) eval/decode to stop with CancelledError; safe "
     "from any thread. The flag clears when the CancelledError is raised."},
    {"set_abort", ctx_set_abort, METH_O, "set_abort(flag): set or clear the cancel flag."},
    {"close", ctx_close, METH_NOARGS, "close(): free the KV cache and release the model."},
    {"__enter__", self_enter, METH_NOARGS, NULL},
    {"__exit__", ctx_exit, METH_VARARGS, NULL},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef ctx_getset[] = {
    {"n_ctx", ctx_n_ctx, NULL, "KV positions per sequence.", NULL},
    {"n_seq", ctx_n_seq, NULL, "Number of sequences.", NULL},
    {"n_vocab", ctx_n_vocab, NULL, "Vocabulary size (logit row length).", NULL},
    {"n_batch", ctx_n_batch, NULL, "Maximum tokens per decode call.", NULL},
    {"kv_bytes", ctx_kv_bytes, NULL, "Bytes of KV cache.", NULL},
    {"kv_type", ctx_kv_type, NULL, "What the KV cache stores: 'f32' or 'f16'.", NULL},
    {"scratch_bytes", ctx_scratch_bytes, NULL, "Bytes of scratch buffers.", NULL},
    {"cancelled", ctx_cancelled, NULL, "True while the cancel flag is set.", NULL},
    {"model", ctx_model, NULL, "The Model this context evaluates.", NULL},
    {"closed", ctx_closed, NULL, "True after close().", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

PyTypeObject BnpyContext_Type = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "bitnet_py._core.Context",
    .tp_basicsize = sizeof(BnpyContext),
    .tp_dealloc = ctx_dealloc,
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE | Py_TPFLAGS_HAVE_GC,
    .tp_doc = "Context(model, n_ctx=0, n_seq=1, n_batch=0, n_threads=0, *, kv_type='f32'): KV "
              "cache and scratch for evaluating a Model. kv_type 'f16' keeps keys and values in "
              "IEEE half (llama.cpp's default cache): half the memory and faster decoding, "
              "rounded on store.",
    .tp_traverse = ctx_traverse,
    .tp_clear = ctx_clear,
    .tp_weaklistoffset = offsetof(BnpyContext, weakreflist),
    .tp_methods = ctx_methods,
    .tp_getset = ctx_getset,
    .tp_new = ctx_new,
};

/* ======================================================================== */
/* Module                                                                   */
/* ======================================================================== */

static PyMethodDef module_methods[] = {
    {"version", py_version, METH_NOARGS, "version() -> libbitnet version string."},
    {"cpu_features", py_cpu_features, METH_NOARGS,
     "cpu_features() -> list of CPU features detected at run time."},
    {"kernel_name", py_kernel_name, METH_NOARGS, "kernel_name() -> the kernel set in use."},
    {"build_info", py_build_info, METH_NOARGS, "build_info() -> compiler and flags."},
    {"type_id", py_type_id, METH_O, "type_id(name) -> ggml type id."},
    {"type_name", py_type_name, METH_O, "type_name(id) -> type name."},
    {"type_nbytes", (PyCFunction)(void (*)(void))py_type_nbytes, METH_VARARGS | METH_KEYWORDS,
     "type_nbytes(type, n_cols, n_rows=1) -> bytes of such a tensor."},
    {"quantize", (PyCFunction)(void (*)(void))py_quantize, METH_VARARGS | METH_KEYWORDS,
     "quantize(type, x) -> bytes: x is float32 [n_rows, n_cols] (or 1-D: one row)."},
    {"dequantize", (PyCFunction)(void (*)(void))py_dequantize, METH_VARARGS | METH_KEYWORDS,
     "dequantize(type, data, n_cols, n_rows=1) -> float32 array [n_rows, n_cols]."},
    {"ternarize", py_ternarize, METH_O,
     "ternarize(w) -> (int8 array of -1/0/1 shaped like w, scale): BitNet absmean."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef core_module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "bitnet_py._core",
    .m_doc = "Low-level bindings of libbitnet (include/bitnet.h).",
    .m_size = -1,
    .m_methods = module_methods,
};

/* Implemented in _core_tokenizer.c / _core_sampler.c when those exist. */
#if defined(__GNUC__)
extern int bnpy_init_tokenizer(PyObject *m) __attribute__((weak));
extern int bnpy_init_sampler(PyObject *m) __attribute__((weak));
/* Checkpoint readers and converters (_core_formats.c). */
extern int bnpy_init_formats(PyObject *m) __attribute__((weak));
#endif

static int add_type(PyObject *m, PyTypeObject *t, const char *name) {
    if (PyType_Ready(t) < 0) return -1;
    if (!name) return 0;
    Py_INCREF(t);
    if (PyModule_AddObject(m, name, (PyObject *)t) < 0) {
        Py_DECREF(t);
        return -1;
    }
    return 0;
}

PyMODINIT_FUNC PyInit__core(void) {
    PyObject *m = PyModule_Create(&core_module);
    if (!m) return NULL;
    if (!bnpy_numpy()) goto fail;
    if (init_exceptions(m) < 0) goto fail;
    if (add_type(m, &BnpyTensorBuffer_Type, NULL) < 0 ||
        add_type(m, &BnpyGGUFWriter_Type, "GGUFWriter") < 0 ||
        add_type(m, &BnpyGGUFReader_Type, "GGUFReader") < 0 ||
        add_type(m, &BnpyModel_Type, "Model") < 0 || add_type(m, &BnpyContext_Type, "Context") < 0)
        goto fail;
    if (PyModule_AddStringConstant(m, "__version__", BN_VERSION_STRING) < 0) goto fail;
    if (bnpy_init_tokenizer && bnpy_init_tokenizer(m) < 0) goto fail;
    if (bnpy_init_sampler && bnpy_init_sampler(m) < 0) goto fail;
    if (bnpy_init_formats && bnpy_init_formats(m) < 0) goto fail;
    return m;
fail:
    Py_DECREF(m);
    return NULL;
}
