/* bitnet: the command-line tool over libbitnet.
 *
 *   bitnet info MODEL                 metadata, tensor table, model config
 *   bitnet generate -m MODEL ...      stream a continuation of a prompt
 *   bitnet perplexity -m MODEL -f F   perplexity of a text, as llama.cpp's
 *                                     perplexity tool computes it
 *
 * Exit codes: 0 success, 1 failure (missing or malformed file, prompt longer
 * than the context, a library error), 2 bad command line. Messages go to
 * stderr, prefixed "bitnet: ". */
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bitnet.h"
#include "gguf_internal.h"

enum { EXIT_USAGE = 2 };
/* parse_opts printed the help: the command exits 0. */
#define HELP_SHOWN (-1)

/* Tokens per bn_decode call. */
#define BATCH 512
/* llama.cpp's perplexity default context. */
#define PPL_DEFAULT_CTX 512

static const char USAGE[] =
    "usage: bitnet <command> [options]\n"
    "\n"
    "commands:\n"
    "  info MODEL                 print the GGUF metadata (every key; long arrays\n"
    "                             summarized), the tensor table and the model config\n"
    "  generate -m MODEL ...      generate text from a prompt, streaming it to stdout\n"
    "  perplexity -m MODEL -f F   perplexity of the text in F\n"
    "\n"
    "generate options:\n"
    "  -m, --model PATH           GGUF model\n"
    "  -p, --prompt TEXT          prompt text (tokenized with the model's vocabulary)\n"
    "  -f, --file PATH            read the prompt from a file\n"
    "      --ids 1,2,3            prompt as token ids; output is printed as ids\n"
    "  -n, --n-predict N          tokens to generate (default 128; -1: until the\n"
    "                             context is full)\n"
    "      --temp T               temperature (default 0.8; 0: greedy)\n"
    "      --top-k K              top-k (default 40; 0: off)\n"
    "      --top-p P              top-p (default 0.95; 1: off)\n"
    "      --min-p P              min-p (default 0.05; 0: off)\n"
    "      --typical P            locally typical sampling (default 1: off)\n"
    "      --repeat-penalty R     repetition penalty (default 1: off)\n"
    "      --repeat-last-n N      tokens the penalties look back (default 64; -1: all)\n"
    "      --frequency-penalty F  (default 0)\n"
    "      --presence-penalty F   (default 0)\n"
    "      --mirostat N           0 off, 1 mirostat, 2 mirostat 2.0 (default 0)\n"
    "      --mirostat-tau T       target entropy (default 5)\n"
    "      --mirostat-eta E       learning rate (default 0.1)\n"
    "  -s, --seed S               RNG seed (default 3735928559); -1: from the clock\n"
    "      --no-bos               do not add the bos token to the prompt\n"
    "      --special              parse special-token text in the prompt (default:\n"
    "                             encode it as plain text)\n"
    "      --echo                 print the prompt before the continuation\n"
    "      --ignore-eos           do not stop at end-of-generation tokens\n"
    "\n"
    "common options:\n"
    "  -c, --ctx N                context size (generate: default the model's;\n"
    "                             perplexity: default 512)\n"
    "  -t, --threads N            threads (default: all cores)\n"
    "      --cache-type T         KV cache: f32 (default) or f16 (half the memory)\n"
    "      --chunks N             perplexity: score at most N chunks\n"
    "  -h, --help                 this text\n"
    "      --version              version, kernels and build\n"
    "\n"
    "perplexity follows llama.cpp's tool: the tokenized text (with bos) is cut into\n"
    "chunks of --ctx tokens, each evaluated from an empty cache with bos as its first\n"
    "token; the second half of each chunk is scored (token j predicts j + 1 for\n"
    "ctx/2 <= j < ctx - 1); PPL = exp(mean negative log-likelihood). It needs at\n"
    "least 2 * ctx tokens.\n";

/* ---- small helpers ------------------------------------------------------ */

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

#if defined(__GNUC__)
__attribute__((format(printf, 1, 2)))
#endif
static int
usage_error(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fputs("bitnet: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputs("\nTry 'bitnet --help'.\n", stderr);
    va_end(ap);
    return EXIT_USAGE;
}

#if defined(__GNUC__)
__attribute__((format(printf, 1, 2)))
#endif
static int
failure(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fputs("bitnet: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    return EXIT_FAILURE;
}

static int lib_failure(const char *what, bn_status st, const bn_error *err) {
    return failure("%s: %s%s%s", what, bn_status_str(st), err->msg[0] ? ": " : "", err->msg);
}

static int parse_long(const char *opt, const char *s, long lo, long hi, long *out) {
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (*s == '\0' || *end != '\0' || errno == ERANGE)
        return usage_error("%s: '%s' is not an integer", opt, s);
    if (v < lo || v > hi) return usage_error("%s: %ld is outside [%ld, %ld]", opt, v, lo, hi);
    *out = v;
    return 0;
}

static int parse_float(const char *opt, const char *s, float *out) {
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (*s == '\0' || *end != '\0' || errno == ERANGE || isnan(v))
        return usage_error("%s: '%s' is not a number", opt, s);
    *out = (float)v;
    return 0;
}

static int parse_seed(const char *opt, const char *s, uint64_t *out) {
    if (strcmp(s, "-1") == 0) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        *out = (uint64_t)ts.tv_sec * 1000000007u ^ (uint64_t)ts.tv_nsec;
        return 0;
    }
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 0);
    if (*s == '\0' || *s == '-' || *end != '\0' || errno == ERANGE)
        return usage_error("%s: '%s' is not a seed (an unsigned integer, or -1)", opt, s);
    *out = (uint64_t)v;
    return 0;
}

/* Whole file into a NUL-terminated buffer. */
static char *read_file(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) {
        failure("cannot open %s: %s", path, strerror(errno));
        return NULL;
    }
    size_t cap = 1 << 16, n = 0;
    char *buf = malloc(cap);
    while (buf) {
        if (n + 1 >= cap) {
            char *nb = cap > SIZE_MAX / 2 ? NULL : realloc(buf, cap * 2);
            if (!nb) {
                free(buf);
                buf = NULL;
                break;
            }
            buf = nb;
            cap *= 2;
        }
        size_t got = fread(buf + n, 1, cap - 1 - n, f);
        n += got;
        if (got == 0) break;
    }
    int bad = ferror(f);
    fclose(f);
    if (!buf) {
        failure("out of memory reading %s", path);
        return NULL;
    }
    if (bad) {
        free(buf);
        failure("cannot read %s", path);
        return NULL;
    }
    buf[n] = '\0';
    *len = n;
    return buf;
}

/* ---- options ------------------------------------------------------------ */

typedef struct opts {
    const char *model;
    const char *prompt;
    const char *file;
    const char *ids;
    long n_predict;
    long n_ctx;
    long n_threads;
    long n_chunks;
    int kv_type;
    int no_bos, special, echo, ignore_eos;
    bn_sampler_params sp;
} opts;

/* "--opt value" or "--opt=value": the value, advancing *i; NULL when absent. */
static const char *opt_value(int argc, char **argv, int *i, const char *eq) {
    if (eq) return eq + 1;
    if (*i + 1 >= argc) return NULL;
    return argv[++*i];
}

static int is_opt(const char *arg, size_t name_len, const char *s, const char *l) {
    return (s && strlen(s) == name_len && strncmp(arg, s, name_len) == 0) ||
           (l && strlen(l) == name_len && strncmp(arg, l, name_len) == 0);
}

/* Parse the options after the command. `positional` (may be NULL) receives
 * one positional argument. Returns 0, an exit code, or HELP_SHOWN. */
static int parse_opts(int argc, char **argv, opts *o, const char **positional) {
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i];
        if (a[0] != '-' || strcmp(a, "-") == 0) {
            if (positional && !*positional) {
                *positional = a;
                continue;
            }
            return usage_error("unexpected argument '%s'", a);
        }
        const char *eq = a[1] == '-' ? strchr(a, '=') : NULL;
        size_t nl = eq ? (size_t)(eq - a) : strlen(a);
        /* flags */
        if (is_opt(a, nl, "-h", "--help")) {
            fputs(USAGE, stdout);
            return HELP_SHOWN;
        }
        if (is_opt(a, nl, NULL, "--no-bos")) {
            o->no_bos = 1;
            continue;
        }
        if (is_opt(a, nl, NULL, "--special")) {
            o->special = 1;
            continue;
        }
        if (is_opt(a, nl, NULL, "--echo")) {
            o->echo = 1;
            continue;
        }
        if (is_opt(a, nl, NULL, "--ignore-eos")) {
            o->ignore_eos = 1;
            continue;
        }
        /* options with a value */
        static const char *const with_value[][2] = {
            {"-m", "--model"},
            {"-p", "--prompt"},
            {"-f", "--file"},
            {NULL, "--ids"},
            {"-n", "--n-predict"},
            {"-c", "--ctx"},
            {"-t", "--threads"},
            {NULL, "--temp"},
            {NULL, "--top-k"},
            {NULL, "--top-p"},
            {NULL, "--min-p"},
            {NULL, "--typical"},
            {NULL, "--repeat-penalty"},
            {NULL, "--repeat-last-n"},
            {NULL, "--frequency-penalty"},
            {NULL, "--presence-penalty"},
            {NULL, "--mirostat"},
            {NULL, "--mirostat-tau"},
            {NULL, "--mirostat-eta"},
            {"-s", "--seed"},
            {NULL, "--chunks"},
            {NULL, "--cache-type"},
        };
        int which = -1;
        for (size_t k = 0; k < sizeof with_value / sizeof with_value[0]; k++) {
            if (is_opt(a, nl, with_value[k][0], with_value[k][1])) {
                which = (int)k;
                break;
            }
        }
        if (which < 0) return usage_error("unknown option '%.*s'", (int)nl, a);
        const char *name = with_value[which][1];
        const char *v = opt_value(argc, argv, &i, eq);
        if (!v) return usage_error("%s needs a value", name);
        long n = 0;
        int rc = 0;
        switch (which) {
        case 0: o->model = v; break;
        case 1: o->prompt = v; break;
        case 2: o->file = v; break;
        case 3: o->ids = v; break;
        case 4:
            rc = parse_long(name, v, -1, INT32_MAX, &n);
            o->n_predict = n;
            break;
        case 5:
            rc = parse_long(name, v, 0, INT32_MAX, &n);
            o->n_ctx = n;
            break;
        case 6:
            rc = parse_long(name, v, 0, 4096, &n);
            o->n_threads = n;
            break;
        case 7: rc = parse_float(name, v, &o->sp.temperature); break;
        case 8:
            rc = parse_long(name, v, INT32_MIN, INT32_MAX, &n);
            o->sp.top_k = (int32_t)n;
            break;
        case 9: rc = parse_float(name, v, &o->sp.top_p); break;
        case 10: rc = parse_float(name, v, &o->sp.min_p); break;
        case 11: rc = parse_float(name, v, &o->sp.typical_p); break;
        case 12: rc = parse_float(name, v, &o->sp.repeat_penalty); break;
        case 13:
            rc = parse_long(name, v, -1, INT32_MAX, &n);
            o->sp.penalty_last_n = (int32_t)n;
            break;
        case 14: rc = parse_float(name, v, &o->sp.frequency_penalty); break;
        case 15: rc = parse_float(name, v, &o->sp.presence_penalty); break;
        case 16:
            rc = parse_long(name, v, 0, 2, &n);
            o->sp.mirostat = (int32_t)n;
            break;
        case 17: rc = parse_float(name, v, &o->sp.mirostat_tau); break;
        case 18: rc = parse_float(name, v, &o->sp.mirostat_eta); break;
        case 19: rc = parse_seed(name, v, &o->sp.seed); break;
        case 20:
            rc = parse_long(name, v, 1, INT32_MAX, &n);
            o->n_chunks = n;
            break;
        case 21:
            if (strcmp(v, "f32") == 0) {
                o->kv_type = BN_KV_F32;
            } else if (strcmp(v, "f16") == 0) {
                o->kv_type = BN_KV_F16;
            } else {
                rc = usage_error("%s: '%s' is not f32 or f16", name, v);
            }
            break;
        default: break;
        }
        if (rc) return rc;
    }
    return 0;
}

/* ---- info --------------------------------------------------------------- */

static const char *vtype_name(bn_gguf_vtype t) {
    switch (t) {
    case BN_GGUF_UINT8: return "u8";
    case BN_GGUF_INT8: return "i8";
    case BN_GGUF_UINT16: return "u16";
    case BN_GGUF_INT16: return "i16";
    case BN_GGUF_UINT32: return "u32";
    case BN_GGUF_INT32: return "i32";
    case BN_GGUF_FLOAT32: return "f32";
    case BN_GGUF_BOOL: return "bool";
    case BN_GGUF_STRING: return "str";
    case BN_GGUF_ARRAY: return "arr";
    case BN_GGUF_UINT64: return "u64";
    case BN_GGUF_INT64: return "i64";
    case BN_GGUF_FLOAT64: return "f64";
    }
    return "?";
}

/* A string as a quoted literal: escapes for quotes, backslashes and control
 * bytes; at most `max` bytes, then the length. */
static void print_str(const char *s, uint64_t len, uint64_t max) {
    putchar('"');
    uint64_t n = len < max ? len : max;
    for (uint64_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)s[i];
        if (ch == '"' || ch == '\\')
            printf("\\%c", ch);
        else if (ch == '\n')
            fputs("\\n", stdout);
        else if (ch == '\t')
            fputs("\\t", stdout);
        else if (ch == '\r')
            fputs("\\r", stdout);
        else if (ch < 0x20 || ch == 0x7f)
            printf("\\x%02x", ch);
        else
            putchar(ch);
    }
    putchar('"');
    if (len > max) printf("... (%" PRIu64 " bytes)", len);
}

/* One element of a numeric array (little-endian data, as GGUF stores it). */
static void print_elem(bn_gguf_vtype t, const unsigned char *p) {
    union {
        uint8_t u8;
        int8_t i8;
        uint16_t u16;
        int16_t i16;
        uint32_t u32;
        int32_t i32;
        float f32;
        uint64_t u64;
        int64_t i64;
        double f64;
    } v;
    memcpy(&v, p, bn_gguf_vtype_size(t));
    switch (t) {
    case BN_GGUF_UINT8: printf("%u", (unsigned)v.u8); break;
    case BN_GGUF_INT8: printf("%d", (int)v.i8); break;
    case BN_GGUF_BOOL: fputs(v.u8 ? "true" : "false", stdout); break;
    case BN_GGUF_UINT16: printf("%u", (unsigned)v.u16); break;
    case BN_GGUF_INT16: printf("%d", (int)v.i16); break;
    case BN_GGUF_UINT32: printf("%" PRIu32, v.u32); break;
    case BN_GGUF_INT32: printf("%" PRId32, v.i32); break;
    case BN_GGUF_FLOAT32: printf("%.9g", (double)v.f32); break;
    case BN_GGUF_UINT64: printf("%" PRIu64, v.u64); break;
    case BN_GGUF_INT64: printf("%" PRId64, v.i64); break;
    case BN_GGUF_FLOAT64: printf("%.17g", v.f64); break;
    default: fputs("?", stdout); break;
    }
}

#define ARRAY_SHOWN 8
#define STRING_SHOWN 160

static int print_kv(const bn_gguf *g, int64_t i) {
    bn_error err;
    bn_status st = BN_OK;
    bn_gguf_vtype t = bn_gguf_kv_type(g, i);
    printf("  %s: ", bn_gguf_key(g, i));
    if (t == BN_GGUF_ARRAY) {
        bn_gguf_vtype et;
        uint64_t n;
        const void *data;
        st = bn_gguf_get_arr(g, i, &et, &n, &data, &err);
        if (st != BN_OK) goto bad;
        printf("arr[%s] (%" PRIu64 ") = [", vtype_name(et), n);
        uint64_t shown = n < ARRAY_SHOWN ? n : ARRAY_SHOWN;
        for (uint64_t j = 0; j < shown; j++) {
            if (j) fputs(", ", stdout);
            if (et == BN_GGUF_STRING) {
                const char *s;
                uint64_t len;
                st = bn_gguf_get_arr_str(g, i, j, &s, &len, &err);
                if (st != BN_OK) goto bad;
                print_str(s, len, 48);
            } else if (bn_gguf_vtype_size(et) && data) {
                print_elem(et, (const unsigned char *)data + j * bn_gguf_vtype_size(et));
            } else {
                fputs("...", stdout);
                break;
            }
        }
        printf("%s]\n", n > shown ? ", ..." : "");
        return 0;
    }
    printf("%s = ", vtype_name(t));
    switch (t) {
    case BN_GGUF_STRING: {
        const char *s;
        uint64_t len;
        st = bn_gguf_get_str(g, i, &s, &len, &err);
        if (st == BN_OK) print_str(s, len, STRING_SHOWN);
        break;
    }
    case BN_GGUF_BOOL: {
        int b;
        st = bn_gguf_get_bool(g, i, &b, &err);
        if (st == BN_OK) fputs(b ? "true" : "false", stdout);
        break;
    }
    case BN_GGUF_FLOAT32:
    case BN_GGUF_FLOAT64: {
        double d;
        st = bn_gguf_get_f64(g, i, &d, &err);
        if (st == BN_OK) printf(t == BN_GGUF_FLOAT32 ? "%.9g" : "%.17g", d);
        break;
    }
    case BN_GGUF_UINT64: {
        uint64_t u;
        st = bn_gguf_get_u64(g, i, &u, &err);
        if (st == BN_OK) printf("%" PRIu64, u);
        break;
    }
    default: {
        int64_t v;
        st = bn_gguf_get_i64(g, i, &v, &err);
        if (st == BN_OK) printf("%" PRId64, v);
        break;
    }
    }
    if (st != BN_OK) goto bad;
    putchar('\n');
    return 0;
bad:
    printf("<unreadable: %s>\n", err.msg);
    return 1;
}

static void print_config(const char *path) {
    bn_model_params mp = bn_model_default_params();
    bn_model *m = NULL;
    bn_error err;
    bn_status st = bn_model_load(path, &mp, &m, &err);
    if (st != BN_OK) {
        printf("\nmodel: does not load: %s: %s\n", bn_status_str(st), err.msg);
        return;
    }
    bn_model_config c;
    bn_model_get_config(m, &c);
    printf("\nmodel config:\n");
    printf("  arch: %s\n", c.arch);
    printf("  n_vocab: %d\n  n_ctx_train: %d\n  n_embd: %d\n  n_layer: %d\n", c.n_vocab,
           c.n_ctx_train, c.n_embd, c.n_layer);
    printf("  n_head: %d\n  n_head_kv: %d\n  head_dim: %d\n  n_ff: %d\n", c.n_head, c.n_head_kv,
           c.head_dim, c.n_ff);
    printf("  norm_eps: %g\n  rope_theta: %g\n  rope_dim: %d\n", (double)c.norm_eps,
           (double)c.rope_theta, c.rope_dim);
    printf("  ffn_act: %s\n  tied_output: %s\n", c.ffn_act ? "relu2 (gated)" : "silu (gated)",
           c.tied_output ? "yes" : "no");
    printf("  weight_type: %s\n  embd_type: %s\n  output_type: %s\n", bn_type_name(c.weight_type),
           bn_type_name(c.embd_type), bn_type_name(c.output_type));
    printf("  n_params: %" PRId64 "\n  weight_bytes: %" PRIu64 "\n", bn_model_n_params(m),
           bn_model_weight_bytes(m));
    const bn_tokenizer *t = bn_model_tokenizer(m);
    if (t) {
        printf("  tokenizer: %s, %d tokens, bos %d, eos %d, eot %d\n",
               bn_tokenizer_get_kind(t) == BN_TOKENIZER_SPM ? "spm" : "bpe",
               bn_tokenizer_n_vocab(t), bn_tokenizer_bos(t), bn_tokenizer_eos(t),
               bn_tokenizer_eot(t));
    } else {
        printf("  tokenizer: none\n");
    }
    bn_model_free(m);
}

static int cmd_info(int argc, char **argv) {
    opts o;
    memset(&o, 0, sizeof o);
    const char *path = NULL;
    int rc = parse_opts(argc, argv, &o, &path);
    if (rc) return rc == HELP_SHOWN ? 0 : rc;
    if (!path) path = o.model;
    if (!path) return usage_error("info needs a MODEL");
    bn_gguf *g = NULL;
    bn_error err;
    bn_status st = bn_gguf_open(path, &g, &err);
    if (st != BN_OK) return lib_failure(path, st, &err);

    printf("file: %s\n", path);
    printf("gguf version: %" PRIu32 ", alignment: %" PRIu32 ", size: %" PRIu64
           " bytes, tensor data at: %" PRIu64 "\n",
           bn_gguf_version(g), bn_gguf_alignment(g), bn_gguf_file_size(g), bn_gguf_data_offset(g));
    int64_t n_kv = bn_gguf_n_kv(g);
    printf("\nmetadata: %" PRId64 " keys\n", n_kv);
    int bad = 0;
    for (int64_t i = 0; i < n_kv; i++)
        bad |= print_kv(g, i);

    int64_t n_t = bn_gguf_n_tensors(g);
    printf("\ntensors: %" PRId64 "\n", n_t);
    int w = 4;
    for (int64_t i = 0; i < n_t; i++) {
        int l = (int)strlen(bn_gguf_tensor_name(g, i));
        if (l > w) w = l;
    }
    printf("  %5s  %-*s  %-8s  %-22s  %12s  %12s\n", "#", w, "name", "type", "shape", "bytes",
           "offset");
    uint64_t total = 0;
    for (int64_t i = 0; i < n_t; i++) {
        char shape[96];
        int nd = bn_gguf_tensor_n_dims(g, i), pos = 0;
        pos += snprintf(shape + pos, sizeof shape - (size_t)pos, "[");
        for (int d = 0; d < nd && pos < (int)sizeof shape; d++)
            pos += snprintf(shape + pos, sizeof shape - (size_t)pos, "%s%" PRId64, d ? ", " : "",
                            bn_gguf_tensor_ne(g, i, d));
        if (pos < (int)sizeof shape) snprintf(shape + pos, sizeof shape - (size_t)pos, "]");
        uint64_t nb = bn_gguf_tensor_nbytes(g, i);
        total += nb;
        printf("  %5" PRId64 "  %-*s  %-8s  %-22s  %12" PRIu64 "  %12" PRIu64 "\n", i, w,
               bn_gguf_tensor_name(g, i), bn_type_name(bn_gguf_tensor_type(g, i)), shape, nb,
               bn_gguf_tensor_offset(g, i));
    }
    printf("  total: %" PRIu64 " bytes in %" PRId64 " tensors\n", total, n_t);
    bn_gguf_close(g);

    print_config(path);
    return bad ? EXIT_FAILURE : 0;
}

/* ---- shared by generate and perplexity ---------------------------------- */

/* Whether prompts get bos: the vocabulary has one and the file does not say
 * tokenizer.ggml.add_bos_token = false (llama.cpp's add_special). */
static int wants_bos(const bn_model *m, const bn_tokenizer *t) {
    if (bn_tokenizer_bos(t) < 0) return 0;
    const bn_gguf *g = bn_model_gguf(m);
    int64_t k = g ? bn_gguf_find_key(g, "tokenizer.ggml.add_bos_token") : -1;
    int b = 1;
    if (k >= 0 && bn_gguf_get_bool(g, k, &b, NULL) != BN_OK) b = 1;
    return b;
}

static int tokenize_text(const bn_tokenizer *t, const char *text, size_t len, int add_bos,
                         int special, int32_t **out, size_t *n) {
    bn_encode_opts eo;
    memset(&eo, 0, sizeof eo);
    eo.add_bos = add_bos;
    eo.allow_all_special = special;
    eo.disallow_none = !special; /* special-token text is plain text */
    bn_error err;
    size_t need = 0;
    bn_status st = bn_tokenize(t, text, len, &eo, NULL, 0, &need, &err);
    if (st != BN_OK && st != BN_ERR_RANGE) return lib_failure("tokenizing", st, &err);
    int32_t *ids = malloc((need ? need : 1) * sizeof *ids);
    if (!ids) return failure("out of memory for %zu tokens", need);
    st = bn_tokenize(t, text, len, &eo, ids, need, &need, &err);
    if (st != BN_OK) {
        free(ids);
        return lib_failure("tokenizing", st, &err);
    }
    *out = ids;
    *n = need;
    return 0;
}

static int parse_ids(const char *s, int32_t n_vocab, int32_t **out, size_t *n) {
    size_t cap = 1;
    for (const char *p = s; *p; p++)
        cap += *p == ',';
    int32_t *ids = malloc(cap * sizeof *ids);
    if (!ids) return failure("out of memory");
    size_t k = 0;
    const char *p = s;
    for (;;) {
        while (*p == ' ')
            p++;
        char *end;
        errno = 0;
        long v = strtol(p, &end, 10);
        if (end == p || errno == ERANGE) {
            free(ids);
            return usage_error("--ids: '%s' is not a comma-separated list of token ids", s);
        }
        if (v < 0 || v >= n_vocab) {
            free(ids);
            return usage_error("--ids: token %ld is outside the vocabulary [0, %d)", v,
                               (int)n_vocab);
        }
        ids[k++] = (int32_t)v;
        p = end;
        while (*p == ' ')
            p++;
        if (*p == '\0') break;
        if (*p != ',' || k == cap) {
            free(ids);
            return usage_error("--ids: '%s' is not a comma-separated list of token ids", s);
        }
        p++;
    }
    *out = ids;
    *n = k;
    return 0;
}

/* Evaluate ids[0..n) in sequence 0 in batches; logits of the last only. */
static int decode_all(bn_context *ctx, const int32_t *ids, size_t n) {
    for (size_t i = 0; i < n; i += BATCH) {
        bn_batch b;
        memset(&b, 0, sizeof b);
        b.n_tokens = (int32_t)(n - i < BATCH ? n - i : BATCH);
        b.token = ids + i;
        bn_error err;
        bn_status st = bn_decode(ctx, &b, &err);
        if (st != BN_OK) return lib_failure("decode", st, &err);
    }
    return 0;
}

static int load_model(const char *path, bn_model **m) {
    if (!path) return usage_error("missing -m MODEL");
    bn_model_params mp = bn_model_default_params();
    bn_error err;
    bn_status st = bn_model_load(path, &mp, m, &err);
    if (st != BN_OK) return lib_failure(path, st, &err);
    return 0;
}

/* ---- generate ----------------------------------------------------------- */

static int cmd_generate(int argc, char **argv) {
    opts o;
    memset(&o, 0, sizeof o);
    o.n_predict = 128;
    o.sp = bn_sampler_default_params();
    int rc = parse_opts(argc, argv, &o, NULL);
    if (rc) return rc == HELP_SHOWN ? 0 : rc;
    if (!o.model) return usage_error("generate needs -m MODEL");
    int n_sources = (o.prompt != NULL) + (o.file != NULL) + (o.ids != NULL);
    if (n_sources != 1) return usage_error("generate needs exactly one of -p, -f or --ids");
    {
        /* Check sampling options before the (slow) model load. */
        bn_sampler *probe = NULL;
        bn_error err;
        bn_status st = bn_sampler_new(&o.sp, 1, &probe, &err);
        if (st != BN_OK) return usage_error("%s", err.msg);
        bn_sampler_free(probe);
    }

    bn_model *model = NULL;
    bn_context *ctx = NULL;
    bn_sampler *smp = NULL;
    bn_detok *dt = NULL;
    int32_t *prompt = NULL;
    size_t n_prompt = 0;
    char *text = NULL;
    bn_error err;
    bn_status st;

    double t_load = now_s();
    if ((rc = load_model(o.model, &model))) goto done;
    t_load = now_s() - t_load;
    bn_model_config cfg;
    bn_model_get_config(model, &cfg);
    const bn_tokenizer *tok = bn_model_tokenizer(model);

    if (o.ids) {
        if ((rc = parse_ids(o.ids, cfg.n_vocab, &prompt, &n_prompt))) goto done;
    } else {
        if (!tok) {
            rc = failure("%s has no tokenizer: give the prompt as --ids", o.model);
            goto done;
        }
        size_t len;
        if (o.file) {
            if (!(text = read_file(o.file, &len))) {
                rc = EXIT_FAILURE;
                goto done;
            }
        } else {
            len = strlen(o.prompt);
        }
        rc = tokenize_text(tok, text ? text : o.prompt, len, !o.no_bos && wants_bos(model, tok),
                           o.special, &prompt, &n_prompt);
        if (rc) goto done;
    }
    if (n_prompt == 0) {
        rc = failure("the prompt is empty");
        goto done;
    }
    int print_ids = o.ids != NULL || !tok;

    bn_context_params cp = bn_context_default_params();
    cp.n_ctx = (int32_t)o.n_ctx;
    cp.n_threads = (int32_t)o.n_threads;
    cp.kv_type = o.kv_type;
    cp.n_batch = BATCH;
    if ((st = bn_context_new(model, &cp, &ctx, &err)) != BN_OK) {
        rc = lib_failure("creating the context", st, &err);
        goto done;
    }
    int32_t n_ctx = bn_context_n_ctx(ctx);
    if (n_prompt >= (size_t)n_ctx) {
        rc = failure("the prompt has %zu tokens but the context holds %d (use --ctx)", n_prompt,
                     (int)n_ctx);
        goto done;
    }
    if ((st = bn_sampler_new(&o.sp, cfg.n_vocab, &smp, &err)) != BN_OK) {
        rc = lib_failure("sampler", st, &err);
        goto done;
    }
    for (size_t i = 0; i < n_prompt; i++)
        bn_sampler_accept(smp, prompt[i]);

    /* The prompt goes through the detokenizer too, so the continuation is
     * spaced as a whole decode would space it. */
    if (!print_ids) {
        if ((st = bn_detok_new(tok, 1, &dt, &err)) != BN_OK) {
            rc = lib_failure("detokenizer", st, &err);
            goto done;
        }
    }
    for (size_t i = 0; i < n_prompt; i++) {
        if (print_ids) {
            if (o.echo) printf("%s%d", i ? " " : "", (int)prompt[i]);
            continue;
        }
        const char *s;
        size_t len;
        if ((st = bn_detok_push(dt, prompt[i], &s, &len, &err)) != BN_OK) {
            rc = lib_failure("detokenizing the prompt", st, &err);
            goto done;
        }
        if (o.echo) fwrite(s, 1, len, stdout);
    }
    fflush(stdout);

    double t0 = now_s();
    if ((rc = decode_all(ctx, prompt, n_prompt))) goto done;
    double t1 = now_s();

    int32_t eos = tok ? bn_tokenizer_eos(tok) : -1;
    int32_t eot = tok ? bn_tokenizer_eot(tok) : -1;
    long n_gen = 0;
    int32_t n_past = (int32_t)n_prompt;
    const char *stop = "the token limit";
    for (;;) {
        if (o.n_predict >= 0 && n_gen >= o.n_predict) break;
        const float *logits = bn_get_logits(ctx, -1);
        if (!logits) {
            rc = failure("no logits after decode");
            goto done;
        }
        int32_t t;
        if ((st = bn_sampler_sample(smp, logits, &t, &err)) != BN_OK) {
            rc = lib_failure("sampling", st, &err);
            goto done;
        }
        if (!o.ignore_eos && (t == eos || t == eot)) {
            stop = "end of generation";
            break;
        }
        bn_sampler_accept(smp, t);
        n_gen++;
        if (print_ids) {
            printf("%s%d", (n_gen > 1 || (o.echo && n_prompt)) ? " " : "", (int)t);
        } else {
            const char *s;
            size_t len;
            if ((st = bn_detok_push(dt, t, &s, &len, &err)) != BN_OK) {
                rc = lib_failure("detokenizing", st, &err);
                goto done;
            }
            fwrite(s, 1, len, stdout);
        }
        fflush(stdout);
        if (o.n_predict >= 0 && n_gen >= o.n_predict) break;
        if (n_past >= n_ctx) {
            stop = "a full context";
            break;
        }
        bn_batch b;
        memset(&b, 0, sizeof b);
        b.n_tokens = 1;
        b.token = &t;
        if ((st = bn_decode(ctx, &b, &err)) != BN_OK) {
            rc = lib_failure("decode", st, &err);
            goto done;
        }
        n_past++;
    }
    double t2 = now_s();
    if (dt) {
        const char *s;
        size_t len;
        if (bn_detok_flush(dt, &s, &len, &err) == BN_OK) fwrite(s, 1, len, stdout);
    }
    putchar('\n');
    fflush(stdout);
    double tp = t1 - t0, tg = t2 - t1;
    fprintf(stderr, "bitnet: stopped at %s\n", stop);
    fprintf(stderr, "bitnet: load: %.3f s\n", t_load);
    fprintf(stderr, "bitnet: prompt: %zu tokens in %.3f s (%.2f tokens/s)\n", n_prompt, tp,
            tp > 0 ? (double)n_prompt / tp : 0.0);
    fprintf(stderr, "bitnet: generation: %ld tokens in %.3f s (%.2f tokens/s)\n", n_gen, tg,
            tg > 0 ? (double)n_gen / tg : 0.0);
    rc = 0;
done:
    bn_detok_free(dt);
    bn_sampler_free(smp);
    bn_context_free(ctx);
    bn_model_free(model);
    free(prompt);
    free(text);
    return rc;
}

/* ---- perplexity --------------------------------------------------------- */

/* -log softmax(logits)[target], in double. */
static double nll_of(const float *logits, int32_t n_vocab, int32_t target) {
    float mx = logits[0];
    for (int32_t i = 1; i < n_vocab; i++)
        if (logits[i] > mx) mx = logits[i];
    double sum = 0;
    for (int32_t i = 0; i < n_vocab; i++)
        sum += exp((double)logits[i] - mx);
    return log(sum) - ((double)logits[target] - mx);
}

static int cmd_perplexity(int argc, char **argv) {
    opts o;
    memset(&o, 0, sizeof o);
    o.sp = bn_sampler_default_params();
    int rc = parse_opts(argc, argv, &o, NULL);
    if (rc) return rc == HELP_SHOWN ? 0 : rc;
    if (!o.model) return usage_error("perplexity needs -m MODEL");
    if (!o.file) return usage_error("perplexity needs -f TEXT_FILE");

    bn_model *model = NULL;
    bn_context *ctx = NULL;
    int32_t *ids = NULL, *chunk = NULL;
    int8_t *want = NULL;
    size_t n_ids = 0, len = 0;
    char *text = read_file(o.file, &len);
    bn_error err;
    bn_status st;
    if (!text) return EXIT_FAILURE;
    if ((rc = load_model(o.model, &model))) goto done;
    const bn_tokenizer *tok = bn_model_tokenizer(model);
    if (!tok) {
        rc = failure("%s has no tokenizer", o.model);
        goto done;
    }
    int add_bos = wants_bos(model, tok);
    if ((rc = tokenize_text(tok, text, len, add_bos, 0, &ids, &n_ids))) goto done;

    int32_t n_ctx = o.n_ctx > 0 ? (int32_t)o.n_ctx : PPL_DEFAULT_CTX;
    if (n_ctx < 4) {
        rc = usage_error("--ctx: perplexity needs a context of at least 4");
        goto done;
    }
    if (n_ids < 2 * (size_t)n_ctx) {
        rc = failure("%s has %zu tokens; perplexity with --ctx %d needs at least %d", o.file, n_ids,
                     (int)n_ctx, 2 * (int)n_ctx);
        goto done;
    }
    bn_context_params cp = bn_context_default_params();
    cp.n_ctx = n_ctx;
    cp.n_threads = (int32_t)o.n_threads;
    cp.kv_type = o.kv_type;
    cp.n_batch = n_ctx < BATCH ? n_ctx : BATCH;
    if ((st = bn_context_new(model, &cp, &ctx, &err)) != BN_OK) {
        rc = lib_failure("creating the context", st, &err);
        goto done;
    }
    bn_model_config cfg;
    bn_model_get_config(model, &cfg);
    size_t n_chunk = n_ids / (size_t)n_ctx;
    if (o.n_chunks > 0 && (size_t)o.n_chunks < n_chunk) n_chunk = (size_t)o.n_chunks;
    int32_t first = n_ctx / 2;
    chunk = malloc((size_t)n_ctx * sizeof *chunk);
    want = malloc((size_t)n_ctx);
    if (!chunk || !want) {
        rc = failure("out of memory");
        goto done;
    }
    fprintf(stderr,
            "bitnet: perplexity: %zu tokens, %zu chunks of %d, scoring positions %d..%d of "
            "each\n",
            n_ids, n_chunk, (int)n_ctx, (int)first, (int)n_ctx - 2);
    double nll = 0, nll2 = 0;
    long count = 0;
    double t0 = now_s();
    for (size_t c = 0; c < n_chunk; c++) {
        const int32_t *src = ids + c * (size_t)n_ctx;
        memcpy(chunk, src, (size_t)n_ctx * sizeof *chunk);
        if (add_bos) chunk[0] = bn_tokenizer_bos(tok);
        for (int32_t j = 0; j < n_ctx; j++)
            want[j] = j >= first && j < n_ctx - 1;
        if ((st = bn_kv_seq_truncate(ctx, 0, 0, &err)) != BN_OK) {
            rc = lib_failure("clearing the cache", st, &err);
            goto done;
        }
        for (int32_t b0 = 0; b0 < n_ctx; b0 += cp.n_batch) {
            bn_batch b;
            memset(&b, 0, sizeof b);
            b.n_tokens = n_ctx - b0 < cp.n_batch ? n_ctx - b0 : cp.n_batch;
            b.token = chunk + b0;
            b.logits = want + b0;
            if ((st = bn_decode(ctx, &b, &err)) != BN_OK) {
                rc = lib_failure("decode", st, &err);
                goto done;
            }
            for (int32_t j = b0; j < b0 + b.n_tokens; j++) {
                if (!want[j]) continue;
                const float *lg = bn_get_logits(ctx, j - b0);
                if (!lg) {
                    rc = failure("no logits for position %d", (int)j);
                    goto done;
                }
                double v = nll_of(lg, cfg.n_vocab, src[j + 1]);
                nll += v;
                nll2 += v * v;
                count++;
            }
        }
        fprintf(stderr, "[%zu]%.4f,", c + 1, exp(nll / (double)count));
        fflush(stderr);
    }
    double dt = now_s() - t0;
    fputc('\n', stderr);
    double mean = nll / (double)count;
    double var = nll2 / (double)count - mean * mean;
    double ppl = exp(mean);
    double unc = var > 0 && count > 1 ? ppl * sqrt(var / (double)(count - 1)) : 0.0;
    printf("Final estimate: PPL = %.4f +/- %.5f\n", ppl, unc);
    fprintf(stderr, "bitnet: %ld tokens scored in %.3f s (%.2f tokens/s evaluated)\n", count, dt,
            dt > 0 ? (double)(n_chunk * (size_t)n_ctx) / dt : 0.0);
    rc = 0;
done:
    bn_context_free(ctx);
    bn_model_free(model);
    free(ids);
    free(chunk);
    free(want);
    free(text);
    return rc;
}

/* ---- main --------------------------------------------------------------- */

int main(int argc, char **argv) {
    if (argc < 2) {
        fputs(USAGE, stderr);
        return EXIT_USAGE;
    }
    const char *cmd = argv[1];
    if (strcmp(cmd, "-h") == 0 || strcmp(cmd, "--help") == 0 || strcmp(cmd, "help") == 0) {
        fputs(USAGE, stdout);
        return 0;
    }
    if (strcmp(cmd, "--version") == 0 || strcmp(cmd, "version") == 0) {
        printf("bitnet %s\n", bn_version());
        printf("kernels: %s\ncpu: %s\nbuild: %s\n", bn_kernel_name(), bn_cpu_features(),
               bn_build_info());
        return 0;
    }
    if (strcmp(cmd, "info") == 0) return cmd_info(argc - 2, argv + 2);
    if (strcmp(cmd, "generate") == 0) return cmd_generate(argc - 2, argv + 2);
    if (strcmp(cmd, "perplexity") == 0) return cmd_perplexity(argc - 2, argv + 2);
    return usage_error("unknown command '%s'", cmd);
}
