/* bitnet_py._core.Sampler: the library's sampler (bn_sampler) for Python.
 *
 *   s = Sampler(n_vocab, temperature=0.8, top_k=40, top_p=0.95, min_p=0.05,
 *               typical_p=1.0, mirostat=0, mirostat_tau=5.0, mirostat_eta=0.1,
 *               repeat_penalty=1.0, frequency_penalty=0.0,
 *               presence_penalty=0.0, penalty_last_n=64, seed=0xDEADBEEF)
 *   s.sample(logits) -> int        logits: 1-D float32 array-like [n_vocab]
 *   s.probs(logits) -> numpy.ndarray float32 [n_vocab] (does not advance
 *                                  the RNG or mirostat)
 *   s.accept(token)                record a token for the penalties
 *   s.reset(seed=None)             clear history and mirostat; reseed (None:
 *                                  the current seed)
 *
 * The C work runs without the GIL; one Sampler is used by one thread at a
 * time (a second concurrent call raises RuntimeError instead of racing). */
#include "_core.h"

#include <structmember.h>

typedef struct BnpySampler {
    PyObject_HEAD bn_sampler *s;
    bn_sampler_params prm;
    int32_t n_vocab;
    int busy;
} BnpySampler;

static void Sampler_dealloc(BnpySampler *self) {
    bn_sampler_free(self->s);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static int Sampler_init(BnpySampler *self, PyObject *args, PyObject *kwds) {
    static char *kwlist[] = {
        "n_vocab",           "temperature",      "top_k",          "top_p",        "min_p",
        "typical_p",         "mirostat",         "mirostat_tau",   "mirostat_eta", "repeat_penalty",
        "frequency_penalty", "presence_penalty", "penalty_last_n", "seed",         NULL};
    bn_sampler_params p = bn_sampler_default_params();
    int n_vocab = 0, top_k = p.top_k, mirostat = p.mirostat, last_n = p.penalty_last_n;
    PyObject *seed_obj = Py_None;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "i|fifffifffffiO:Sampler", kwlist, &n_vocab,
                                     &p.temperature, &top_k, &p.top_p, &p.min_p, &p.typical_p,
                                     &mirostat, &p.mirostat_tau, &p.mirostat_eta, &p.repeat_penalty,
                                     &p.frequency_penalty, &p.presence_penalty, &last_n, &seed_obj))
        return -1;
    p.top_k = top_k;
    p.mirostat = mirostat;
    p.penalty_last_n = last_n;
    if (seed_obj != Py_None) {
        if (!PyLong_Check(seed_obj)) {
            PyErr_SetString(PyExc_TypeError, "Sampler: seed must be an int or None");
            return -1;
        }
        /* Any int: taken modulo 2**64, so negative seeds work too. */
        unsigned long long v = PyLong_AsUnsignedLongLongMask(seed_obj);
        if (v == (unsigned long long)-1 && PyErr_Occurred()) return -1;
        p.seed = (uint64_t)v;
    }
    bn_sampler *s = NULL;
    bn_error err;
    bn_status st = bn_sampler_new(&p, n_vocab, &s, &err);
    if (st != BN_OK) {
        bnpy_raise(st, &err);
        return -1;
    }
    bn_sampler_free(self->s); /* __init__ called again */
    self->s = s;
    self->prm = p;
    self->n_vocab = n_vocab;
    return 0;
}

static int check_ready(BnpySampler *self) {
    if (!self->s) {
        PyErr_SetString(PyExc_ValueError, "Sampler is not initialized");
        return -1;
    }
    if (self->busy) {
        PyErr_SetString(PyExc_RuntimeError, "Sampler is in use by another thread");
        return -1;
    }
    return 0;
}

/* A float32 view of `obj` holding exactly n_vocab values. */
static int get_logits(BnpySampler *self, PyObject *obj, Py_buffer *view) {
    if (bnpy_get_f32(obj, view) != 0) return -1;
    Py_ssize_t n = view->len / (Py_ssize_t)sizeof(float);
    if (view->ndim > 1 || n != self->n_vocab) {
        bnpy_raise_fmt(BN_ERR_INVALID_ARG,
                       "Sampler: logits must be a 1-D array of %d float32 values, got %zd "
                       "values in %d dims",
                       (int)self->n_vocab, n, view->ndim);
        PyBuffer_Release(view);
        return -1;
    }
    return 0;
}

static PyObject *Sampler_sample(BnpySampler *self, PyObject *logits) {
    if (check_ready(self) != 0) return NULL;
    Py_buffer view;
    if (get_logits(self, logits, &view) != 0) return NULL;
    int32_t tok = -1;
    bn_error err;
    bn_status st;
    self->busy = 1;
    Py_BEGIN_ALLOW_THREADS st = bn_sampler_sample(self->s, (const float *)view.buf, &tok, &err);
    Py_END_ALLOW_THREADS self->busy = 0;
    PyBuffer_Release(&view);
    if (st != BN_OK) return bnpy_raise(st, &err);
    return PyLong_FromLong((long)tok);
}

static PyObject *Sampler_probs(BnpySampler *self, PyObject *logits) {
    if (check_ready(self) != 0) return NULL;
    Py_buffer view;
    if (get_logits(self, logits, &view) != 0) return NULL;
    Py_ssize_t shape[1] = {self->n_vocab};
    void *data = NULL;
    PyObject *out = bnpy_empty("float32", 1, shape, &data);
    if (!out) {
        PyBuffer_Release(&view);
        return NULL;
    }
    bn_error err;
    bn_status st;
    self->busy = 1;
    Py_BEGIN_ALLOW_THREADS st =
        bn_sampler_probs(self->s, (const float *)view.buf, (float *)data, &err);
    Py_END_ALLOW_THREADS self->busy = 0;
    PyBuffer_Release(&view);
    if (st != BN_OK) {
        Py_DECREF(out);
        return bnpy_raise(st, &err);
    }
    return out;
}

static PyObject *Sampler_accept(BnpySampler *self, PyObject *arg) {
    if (check_ready(self) != 0) return NULL;
    if (!PyIndex_Check(arg)) {
        PyErr_Format(PyExc_TypeError, "Sampler.accept: token must be an int, not %.100s",
                     Py_TYPE(arg)->tp_name);
        return NULL;
    }
    Py_ssize_t t = PyNumber_AsSsize_t(arg, PyExc_OverflowError);
    if (t == -1 && PyErr_Occurred()) return NULL;
    if (t < 0 || t >= self->n_vocab)
        return bnpy_raise_fmt(BN_ERR_INVALID_ARG,
                              "Sampler.accept: token %zd is outside the vocabulary [0, %d)", t,
                              (int)self->n_vocab);
    bn_sampler_accept(self->s, (int32_t)t);
    Py_RETURN_NONE;
}

static PyObject *Sampler_reset(BnpySampler *self, PyObject *args, PyObject *kwds) {
    static char *kwlist[] = {"seed", NULL};
    PyObject *seed_obj = Py_None;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "|O:reset", kwlist, &seed_obj)) return NULL;
    if (check_ready(self) != 0) return NULL;
    uint64_t seed = self->prm.seed;
    if (seed_obj != Py_None) {
        if (!PyLong_Check(seed_obj)) {
            PyErr_SetString(PyExc_TypeError, "Sampler.reset: seed must be an int or None");
            return NULL;
        }
        unsigned long long v = PyLong_AsUnsignedLongLongMask(seed_obj);
        if (v == (unsigned long long)-1 && PyErr_Occurred()) return NULL;
        seed = (uint64_t)v;
    }
    self->prm.seed = seed;
    bn_sampler_reset(self->s, seed);
    Py_RETURN_NONE;
}

static PyObject *Sampler_repr(BnpySampler *self) {
    const bn_sampler_params *p = &self->prm;
    char buf[512];
    snprintf(buf, sizeof buf,
             "Sampler(n_vocab=%d, temperature=%g, top_k=%d, top_p=%g, min_p=%g, typical_p=%g, "
             "mirostat=%d, mirostat_tau=%g, mirostat_eta=%g, repeat_penalty=%g, "
             "frequency_penalty=%g, presence_penalty=%g, penalty_last_n=%d, seed=%llu)",
             (int)self->n_vocab, (double)p->temperature, (int)p->top_k, (double)p->top_p,
             (double)p->min_p, (double)p->typical_p, (int)p->mirostat, (double)p->mirostat_tau,
             (double)p->mirostat_eta, (double)p->repeat_penalty, (double)p->frequency_penalty,
             (double)p->presence_penalty, (int)p->penalty_last_n, (unsigned long long)p->seed);
    return PyUnicode_FromString(buf);
}

static PyMethodDef Sampler_methods[] = {
    {"sample", (PyCFunction)Sampler_sample, METH_O,
     "sample(logits) -> int\n\nDraw a token id from float32 logits [n_vocab]."},
    {"probs", (PyCFunction)Sampler_probs, METH_O,
     "probs(logits) -> numpy.ndarray\n\nThe float32 distribution sample() draws from "
     "(zero for filtered tokens). Does not advance the RNG or mirostat."},
    {"accept", (PyCFunction)Sampler_accept, METH_O,
     "accept(token)\n\nRecord a token (prompt or chosen) in the penalty history."},
    {"reset", (PyCFunction)(void (*)(void))Sampler_reset, METH_VARARGS | METH_KEYWORDS,
     "reset(seed=None)\n\nClear the history and mirostat state and reseed (None: the "
     "current seed)."},
    {NULL, NULL, 0, NULL}};

#define PRM(field) offsetof(BnpySampler, prm) + offsetof(bn_sampler_params, field)
static PyMemberDef Sampler_members[] = {
    {"n_vocab", T_INT, offsetof(BnpySampler, n_vocab), READONLY, "vocabulary size"},
    {"temperature", T_FLOAT, PRM(temperature), READONLY, "0: greedy"},
    {"top_k", T_INT, PRM(top_k), READONLY, "<= 0: off"},
    {"top_p", T_FLOAT, PRM(top_p), READONLY, "1: off"},
    {"min_p", T_FLOAT, PRM(min_p), READONLY, "0: off"},
    {"typical_p", T_FLOAT, PRM(typical_p), READONLY, "1: off"},
    {"mirostat", T_INT, PRM(mirostat), READONLY, "0 off, 1 v1, 2 v2"},
    {"mirostat_tau", T_FLOAT, PRM(mirostat_tau), READONLY, "target surprise"},
    {"mirostat_eta", T_FLOAT, PRM(mirostat_eta), READONLY, "learning rate"},
    {"repeat_penalty", T_FLOAT, PRM(repeat_penalty), READONLY, "1: off"},
    {"frequency_penalty", T_FLOAT, PRM(frequency_penalty), READONLY, "0: off"},
    {"presence_penalty", T_FLOAT, PRM(presence_penalty), READONLY, "0: off"},
    {"penalty_last_n", T_INT, PRM(penalty_last_n), READONLY, "-1: all, 0: none"},
    {"seed", T_ULONGLONG, PRM(seed), READONLY, "the seed of the last reset"},
    {NULL, 0, 0, 0, NULL}};
#undef PRM

static PyTypeObject BnpySampler_Type = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "bitnet_py._core.Sampler",
    .tp_basicsize = sizeof(BnpySampler),
    .tp_dealloc = (destructor)Sampler_dealloc,
    .tp_repr = (reprfunc)Sampler_repr,
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE,
    .tp_doc = "Sampler(n_vocab, temperature=0.8, top_k=40, top_p=0.95, min_p=0.05, "
              "typical_p=1.0, mirostat=0, mirostat_tau=5.0, mirostat_eta=0.1, "
              "repeat_penalty=1.0, frequency_penalty=0.0, presence_penalty=0.0, "
              "penalty_last_n=64, seed=0xDEADBEEF)\n\n"
              "llama.cpp's sampler chain: penalties -> top-k -> typical -> top-p -> min-p -> "
              "temperature -> draw (mirostat: penalties -> temperature -> mirostat). "
              "temperature 0 is greedy.",
    .tp_methods = Sampler_methods,
    .tp_members = Sampler_members,
    .tp_init = (initproc)Sampler_init,
    .tp_new = PyType_GenericNew,
};

int bnpy_init_sampler(PyObject *m) {
    if (PyType_Ready(&BnpySampler_Type) < 0) return -1;
    Py_INCREF(&BnpySampler_Type);
    if (PyModule_AddObject(m, "Sampler", (PyObject *)&BnpySampler_Type) < 0) {
        Py_DECREF(&BnpySampler_Type);
        return -1;
    }
    return 0;
}
