/*
 * Shared declarations of the bitnet_py._core extension: the module's
 * exceptions and error mapping, the Model / Context / GGUFReader objects (so
 * that the tokenizer and sampler files can take them as arguments), and
 * helpers to move arrays in and out without numpy's C API.
 *
 * Every _core_*.c file includes this header first (it includes Python.h).
 *
 * Arrays: the extension does not compile against numpy's headers. Inputs are
 * read through the buffer protocol (after numpy.ascontiguousarray when they
 * are not already C-contiguous of the right dtype); outputs are made with
 * numpy.empty and filled through their buffer. This keeps the build free of
 * a numpy build dependency and of numpy 1.x / 2.x ABI concerns, at the cost
 * of one Python-level call per array (negligible next to the C work).
 */
#ifndef BITNET_PY_CORE_H
#define BITNET_PY_CORE_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <stdatomic.h>
#include <stdint.h>

#include "bitnet.h"

#if defined(__GNUC__)
#define BNPY_PRINTF(a, b) __attribute__((format(printf, a, b)))
#else
#define BNPY_PRINTF(a, b)
#endif

/* ------------------------------------------------------------------------ */
/* Exceptions                                                               */
/* ------------------------------------------------------------------------ */

/* Exception classes (owned by the module; valid after module init). */
extern PyObject *bnpy_BitNetError;        /* Exception */
extern PyObject *bnpy_ModelNotFoundError; /* BitNetError, FileNotFoundError */
extern PyObject *bnpy_ModelFormatError;   /* BitNetError, ValueError */
extern PyObject *bnpy_TokenizerError;     /* BitNetError, ValueError */
extern PyObject *bnpy_ConfigurationError; /* BitNetError, ValueError */
extern PyObject *bnpy_InferenceError;     /* BitNetError, RuntimeError */
extern PyObject *bnpy_CancelledError;     /* InferenceError */
extern PyObject *bnpy_BitNetIOError;      /* BitNetError, OSError */
extern PyObject *bnpy_BitNetMemoryError;  /* BitNetError, MemoryError */

/* Raise the exception that maps `st` (with err->msg as the message; `err`
 * may be NULL) and return NULL. Mapping:
 *   NOT_FOUND                    -> ModelNotFoundError (errno ENOENT)
 *   IO                           -> ModelNotFoundError when the message says
 *                                   the file does not exist, else BitNetIOError
 *   FORMAT, UNSUPPORTED          -> ModelFormatError
 *   INVALID_ARG, RANGE           -> ConfigurationError
 *   TOKENIZER                    -> TokenizerError
 *   CANCELLED                    -> CancelledError
 *   NOMEM                        -> BitNetMemoryError (a MemoryError)
 *   anything else                -> InferenceError
 * The instance carries error_type (class name), hint, status (int) and
 * status_name. */
PyObject *bnpy_raise(bn_status st, const bn_error *err);
/* Same with a formatted message (for errors found on the Python side). */
PyObject *bnpy_raise_fmt(bn_status st, const char *fmt, ...) BNPY_PRINTF(2, 3);

/* ------------------------------------------------------------------------ */
/* Objects other files may take as arguments                                */
/* ------------------------------------------------------------------------ */

typedef struct BnpyModel {
    PyObject_HEAD bn_model *model; /* NULL once closed and released */
    PyObject *path;                /* str */
    Py_ssize_t users;              /* live objects borrowing `model` (contexts, ...) */
    int closed;                    /* close() was called; freed when users reach 0 */
    PyObject *weakreflist;
} BnpyModel;

typedef struct BnpyContext {
    PyObject_HEAD bn_context *ctx;
    BnpyModel *model; /* strong reference, and one of model->users */
    int32_t n_vocab;
    int busy;              /* a call is running with the GIL released */
    int32_t n_batch;       /* tokens per bn_decode call (chunking in eval) */
    int32_t kv_f16;        /* the KV cache holds IEEE half */
    atomic_int abort_flag; /* set by cancel() from any thread */
    PyObject *weakreflist;
} BnpyContext;

typedef struct BnpyGGUFReader {
    PyObject_HEAD bn_gguf *gguf;
    PyObject *path;     /* str */
    Py_ssize_t exports; /* live memoryviews over the mapping */
    PyObject *weakreflist;
} BnpyGGUFReader;

extern PyTypeObject BnpyModel_Type;
extern PyTypeObject BnpyContext_Type;
extern PyTypeObject BnpyGGUFReader_Type;

/* The open bn_model of a Model object (borrowed), or NULL with TypeError /
 * ValueError set when `obj` is not a Model or is closed. */
const bn_model *bnpy_model_get(PyObject *obj);
/* Pin a Model's handle for an object that borrows it past a call (a
 * Tokenizer viewing the model's vocabulary): until the matching release,
 * close() only marks the model closed and the handle stays valid. The
 * borrower must also hold a strong reference to the Model. Returns the
 * handle, or NULL with an exception set. */
const bn_model *bnpy_model_acquire(PyObject *obj);
void bnpy_model_release(PyObject *obj);

/* The open bn_gguf of a GGUFReader (borrowed), or NULL with an exception. */
const bn_gguf *bnpy_gguf_get(PyObject *obj);

/* ------------------------------------------------------------------------ */
/* Arrays                                                                   */
/* ------------------------------------------------------------------------ */

/* The numpy module (borrowed; imported on first use), or NULL with an
 * exception set. */
PyObject *bnpy_numpy(void);

/* A new C-contiguous numpy array of `dtype` ("float32", "int8", ...) and
 * `ndim` dims; *data receives its buffer (valid while the array lives).
 * Returns a new reference, or NULL with an exception set. */
PyObject *bnpy_empty(const char *dtype, int ndim, const Py_ssize_t *shape, void **data);

/* A read-only, C-contiguous float32 view of `obj` (any array-like; converted
 * with numpy.ascontiguousarray when needed). On success fills `view` (release
 * with PyBuffer_Release) and returns 0; returns -1 with an exception set. */
int bnpy_get_f32(PyObject *obj, Py_buffer *view);

/* Token ids from a sequence of ints or an integer array, range-checked to
 * int32. *out is PyMem_Malloc'd (free with PyMem_Free; non-NULL even when
 * *n is 0). Returns 0, or -1 with an exception set. */
int bnpy_get_i32_seq(PyObject *obj, const char *what, int32_t **out, Py_ssize_t *n);

/* A tensor type from a name ("tq2_0") or an id (int). Returns the id, or -1
 * with ConfigurationError set. */
int bnpy_type_arg(PyObject *obj);

/* ------------------------------------------------------------------------ */
/* Hooks of the other _core_*.c files                                       */
/* ------------------------------------------------------------------------ */

/* Each adds its types / functions to the module and returns 0, or -1 with an
 * exception set. _core.c calls them when they are linked in (they are
 * referenced weakly there, so the module builds without them). */
int bnpy_init_tokenizer(PyObject *m);
int bnpy_init_sampler(PyObject *m);

#endif /* BITNET_PY_CORE_H */
