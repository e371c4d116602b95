/* Optional C accelerator for the line, netstring and length-prefixed decoders.
 *
 * Each function cuts the well-formed, complete frames at the front of a buffer, at most
 * max_frames of them, and stops at the first frame it cannot take whole (incomplete, over a
 * limit, malformed). It returns
 * (frames, position): the Python decoder then carries on from `position` with its own loop,
 * which makes every decision about what remains (wait, or which error). So this file only
 * makes the common case fast; the pure-Python loop alone gives the same results.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <string.h>

static int
get_ssize(PyObject *obj, Py_ssize_t *out)
{
    *out = PyLong_AsSsize_t(obj);
    return (*out == -1 && PyErr_Occurred()) ? -1 : 0;
}

static PyObject *
finish(PyObject *frames, Py_ssize_t pos)
{
    return Py_BuildValue("(Nn)", frames, pos);
}

static int
append_frame(PyObject *frames, const char *prefix, Py_ssize_t prefix_size,
             const char *body, Py_ssize_t body_size)
{
    PyObject *frame = PyBytes_FromStringAndSize(NULL, prefix_size + body_size);
    if (frame == NULL) {
        return -1;
    }
    char *out = PyBytes_AS_STRING(frame);
    if (prefix_size) {
        memcpy(out, prefix, (size_t)prefix_size);
    }
    memcpy(out + prefix_size, body, (size_t)body_size);
    int rc = PyList_Append(frames, frame);
    Py_DECREF(frame);
    return rc;
}

/* cut_prefixed(src, pos, length_offset, width, big, adjust, max_length, max_frames)
 *   -> (frames, pos) */
static PyObject *
cut_prefixed(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    Py_ssize_t pos, field_at, width, adjust, max_length, max_frames;
    if (nargs != 8 || !PyBytes_Check(args[0])) {
        PyErr_SetString(PyExc_TypeError,
                        "cut_prefixed(src: bytes, pos, length_offset, width, big, adjust, "
                        "max_length, max_frames)");
        return NULL;
    }
    int big = PyObject_IsTrue(args[4]);
    if (get_ssize(args[1], &pos) || get_ssize(args[2], &field_at) ||
        get_ssize(args[3], &width) || big < 0 || get_ssize(args[5], &adjust) ||
        get_ssize(args[6], &max_length) || get_ssize(args[7], &max_frames)) {
        return NULL;
    }
    if (width < 1 || width > 8 || field_at < 0 || pos < 0 || max_length < 0) {
        PyErr_SetString(PyExc_ValueError, "cut_prefixed: parameter out of range");
        return NULL;
    }
    const char *buf = PyBytes_AS_STRING(args[0]);
    Py_ssize_t n = PyBytes_GET_SIZE(args[0]);
    Py_ssize_t header = field_at + width;
    PyObject *frames = PyList_New(0);
    if (frames == NULL) {
        return NULL;
    }
    while (pos <= n - header && PyList_GET_SIZE(frames) < max_frames) {
        const unsigned char *field = (const unsigned char *)buf + pos + field_at;
        unsigned long long value = 0;
        for (Py_ssize_t k = 0; k < width; k++) {
            value = (value << 8) | field[big ? k : width - 1 - k];
        }
        /* Compare without overflow: the body length is value + adjust. */
        if (value > (unsigned long long)max_length + (unsigned long long)(adjust < 0 ? -adjust : 0)) {
            break;
        }
        long long length = (long long)value + (long long)adjust;
        if (length < 0 || length > (long long)max_length) {
            break;
        }
        if (length > n - pos - header) {
            break;
        }
        if (append_frame(frames, buf + pos, field_at, buf + pos + header, (Py_ssize_t)length)) {
            Py_DECREF(frames);
            return NULL;
        }
        pos += header + (Py_ssize_t)length;
    }
    return finish(frames, pos);
}

/* cut_netstring(src, pos, max_length, max_frames) -> (frames, pos) */
static PyObject *
cut_netstring(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    Py_ssize_t pos, max_length, max_frames;
    if (nargs != 4 || !PyBytes_Check(args[0])) {
        PyErr_SetString(PyExc_TypeError, "cut_netstring(src: bytes, pos, max_length, max_frames)");
        return NULL;
    }
    if (get_ssize(args[1], &pos) || get_ssize(args[2], &max_length) ||
        get_ssize(args[3], &max_frames)) {
        return NULL;
    }
    if (pos < 0 || max_length < 0) {
        PyErr_SetString(PyExc_ValueError, "cut_netstring: parameter out of range");
        return NULL;
    }
    const char *buf = PyBytes_AS_STRING(args[0]);
    Py_ssize_t n = PyBytes_GET_SIZE(args[0]);
    PyObject *frames = PyList_New(0);
    if (frames == NULL) {
        return NULL;
    }
    while (pos < n && PyList_GET_SIZE(frames) < max_frames) {
        Py_ssize_t i = pos;
        Py_ssize_t length = 0;
        while (i < n && buf[i] >= '0' && buf[i] <= '9') {
            length = length * 10 + (buf[i] - '0');
            i++;
            if (length > max_length) {
                break;
            }
        }
        if (i == pos || i >= n || buf[i] != ':' || length > max_length) {
            break; /* empty, unfinished, malformed or too long: the Python loop decides */
        }
        if (buf[pos] == '0' && i - pos > 1) {
            break; /* leading zero */
        }
        Py_ssize_t start = i + 1;
        if (length >= n - start) {
            break; /* the body and its comma are not all here */
        }
        if (buf[start + length] != ',') {
            break;
        }
        if (append_frame(frames, NULL, 0, buf + start, length)) {
            Py_DECREF(frames);
            return NULL;
        }
        pos = start + length + 1;
    }
    return finish(frames, pos);
}

/* The first occurrence of needle in haystack, or NULL. */
static const char *
find(const char *haystack, Py_ssize_t size, const char *needle, Py_ssize_t needle_size)
{
    const char *end = haystack + size - needle_size;
    const char *p = haystack;
    while (p <= end) {
        p = memchr(p, needle[0], (size_t)(end - p + 1));
        if (p == NULL) {
            return NULL;
        }
        if (memcmp(p + 1, needle + 1, (size_t)(needle_size - 1)) == 0) {
            return p;
        }
        p++;
    }
    return NULL;
}

/* cut_lines(src, pos, delimiter, max_length, max_frames) -> (frames, pos) */
static PyObject *
cut_lines(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    Py_ssize_t pos, max_length, max_frames;
    if (nargs != 5 || !PyBytes_Check(args[0]) || !PyBytes_Check(args[2])) {
        PyErr_SetString(PyExc_TypeError,
                        "cut_lines(src: bytes, pos, delimiter: bytes, max_length, max_frames)");
        return NULL;
    }
    if (get_ssize(args[1], &pos) || get_ssize(args[3], &max_length) ||
        get_ssize(args[4], &max_frames)) {
        return NULL;
    }
    const char *delimiter = PyBytes_AS_STRING(args[2]);
    Py_ssize_t delimiter_size = PyBytes_GET_SIZE(args[2]);
    if (pos < 0 || max_length < 0 || delimiter_size < 1) {
        PyErr_SetString(PyExc_ValueError, "cut_lines: parameter out of range");
        return NULL;
    }
    const char *buf = PyBytes_AS_STRING(args[0]);
    Py_ssize_t n = PyBytes_GET_SIZE(args[0]);
    PyObject *frames = PyList_New(0);
    if (frames == NULL) {
        return NULL;
    }
    while (pos < n && PyList_GET_SIZE(frames) < max_frames) {
        /* A line within the limit has its delimiter end by pos + max_length + size. */
        Py_ssize_t window = n - pos;
        if (window > max_length + delimiter_size) {
            window = max_length + delimiter_size;
        }
        const char *hit = find(buf + pos, window, delimiter, delimiter_size);
        if (hit == NULL) {
            break;
        }
        if (append_frame(frames, NULL, 0, buf + pos, hit - (buf + pos))) {
            Py_DECREF(frames);
            return NULL;
        }
        pos = (hit - buf) + delimiter_size;
    }
    return finish(frames, pos);
}

static PyMethodDef methods[] = {
    {"cut_lines", (PyCFunction)(void (*)(void))cut_lines, METH_FASTCALL,
     "Cut the complete lines within the limit at the front of src."},
    {"cut_prefixed", (PyCFunction)(void (*)(void))cut_prefixed, METH_FASTCALL,
     "Cut the complete, in-limit length-prefixed frames at the front of src."},
    {"cut_netstring", (PyCFunction)(void (*)(void))cut_netstring, METH_FASTCALL,
     "Cut the complete, well-formed netstrings at the front of src."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "statewire.framing._speedups",
    "Optional C accelerator for statewire's line, netstring and length-prefixed decoders.", -1,
    methods,
};

PyMODINIT_FUNC
PyInit__speedups(void)
{
    return PyModule_Create(&module);
}
