/* Bindings of the checkpoint readers and converter (src/checkpoint.c):
 *   checkpoint_format(path) -> "gguf" | "safetensors" | "hf-dir" | "pt" | "pt-dir" | "unknown"
 *   checkpoint_to_gguf(src, dst=None, weight_type=None, head_type=None,
 *                      pt_variant=0, tokenizer=True, progress=None) -> bytes | None
 * progress(name, done, total) is called after each tensor; an exception from
 * it cancels the conversion and propagates. */
#include "_core.h"

typedef struct prog {
    PyObject *fn;
    int failed;
} prog;

static int progress_cb(void *user, const char *tensor, int64_t done, int64_t total) {
    prog *p = user;
    PyGILState_STATE g = PyGILState_Ensure();
    PyObject *r = PyObject_CallFunction(p->fn, "sLL", tensor, (long long)done, (long long)total);
    int stop = 0;
    if (!r) {
        p->failed = 1;
        stop = 1;
    }
    Py_XDECREF(r);
    PyGILState_Release(g);
    return stop;
}

static PyObject *py_checkpoint_format(PyObject *self, PyObject *arg) {
    (void)self;
    PyObject *b = NULL;
    if (!PyUnicode_FSConverter(arg, &b)) return NULL;
    bn_ckpt_format f = bn_checkpoint_sniff(PyBytes_AS_STRING(b));
    Py_DECREF(b);
    return PyUnicode_FromString(bn_checkpoint_format_name(f));
}

static PyObject *py_checkpoint_to_gguf(PyObject *self, PyObject *args, PyObject *kw) {
    (void)self;
    static char *kwlist[] = {"src",        "dst",       "weight_type", "head_type",
                             "pt_variant", "tokenizer", "progress",    NULL};
    PyObject *src_o = NULL, *dst_o = Py_None, *wt_o = Py_None, *ht_o = Py_None, *prog_o = Py_None;
    int pt_variant = 0, tokenizer = 1;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "O|OOOipO", kwlist, &src_o, &dst_o, &wt_o, &ht_o,
                                     &pt_variant, &tokenizer, &prog_o))
        return NULL;
    bn_checkpoint_opts o = bn_checkpoint_default_opts();
    o.pt_variant = pt_variant;
    o.tokenizer = tokenizer;
    if (wt_o != Py_None && (o.weight_type = bnpy_type_arg(wt_o)) < 0) return NULL;
    if (ht_o != Py_None && (o.head_type = bnpy_type_arg(ht_o)) < 0) return NULL;
    if (prog_o != Py_None && !PyCallable_Check(prog_o)) {
        PyErr_SetString(PyExc_TypeError, "progress must be callable");
        return NULL;
    }
    PyObject *src_b = NULL, *dst_b = NULL;
    if (!PyUnicode_FSConverter(src_o, &src_b)) return NULL;
    if (dst_o != Py_None && !PyUnicode_FSConverter(dst_o, &dst_b)) {
        Py_DECREF(src_b);
        return NULL;
    }
    prog p = {prog_o, 0};
    void *mem = NULL;
    size_t size = 0;
    bn_error err;
    bn_status st;
    const char *src = PyBytes_AS_STRING(src_b);
    const char *dst = dst_b ? PyBytes_AS_STRING(dst_b) : NULL;
    Py_BEGIN_ALLOW_THREADS st =
        bn_checkpoint_to_gguf(src, &o, dst, dst ? NULL : &mem, dst ? NULL : &size,
                              prog_o != Py_None ? progress_cb : NULL, &p, &err);
    Py_END_ALLOW_THREADS Py_DECREF(src_b);
    Py_XDECREF(dst_b);
    if (p.failed) {
        bn_checkpoint_free_memory(mem);
        if (!PyErr_Occurred()) PyErr_SetString(PyExc_RuntimeError, "progress callback failed");
        return NULL;
    }
    if (st != BN_OK) return bnpy_raise(st, &err);
    if (dst) Py_RETURN_NONE;
    PyObject *r = PyBytes_FromStringAndSize(mem, (Py_ssize_t)size);
    bn_checkpoint_free_memory(mem);
    return r;
}

static PyMethodDef formats_methods[] = {
    {"checkpoint_format", py_checkpoint_format, METH_O,
     "checkpoint_format(path) -> 'gguf', 'safetensors', 'hf-dir', 'pt', 'pt-dir' or 'unknown'."},
    {"checkpoint_to_gguf", (PyCFunction)(void (*)(void))py_checkpoint_to_gguf,
     METH_VARARGS | METH_KEYWORDS,
     "checkpoint_to_gguf(src, dst=None, weight_type=None, head_type=None, pt_variant=0, "
     "tokenizer=True, progress=None) -> bytes (dst None) or None."},
    {NULL, NULL, 0, NULL}};

int bnpy_init_formats(PyObject *m) { return PyModule_AddFunctions(m, formats_methods); }
