/* Optional C accelerator for the PROXY protocol's most common headers: a v1 TCP4 line, a
 * v2 PROXY header of TCP over IPv4 or IPv6 without TLVs.
 *
 * v1_tcp4(data) reads "PROXY TCP4 <src> <dst> <sport> <dport>\r\n" at the start of data,
 * in the spec's strict form (as statewire.proxy's _V1_TCP4 expression does): dotted quads
 * of decimal octets 0-255 without leading zeros, ports 0-65535 without leading zeros,
 * single spaces, CRLF. It returns (source address, source port, header length), or None
 * for anything else (incomplete, malformed, another family): the Python caller then asks
 * the grammar, which decides and says why it refuses. The expression alone gives the same
 * answers (tests/test_proxy_speedups.py holds them equal).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <string.h>
#include <arpa/inet.h>

/* A decimal number of 1..digits digits without a leading zero, at most max; the position
 * after it, or -1. */
static Py_ssize_t
number(const unsigned char *s, Py_ssize_t at, Py_ssize_t size, int digits, long max,
       long *out)
{
    long value = 0;
    int count = 0;
    while (at < size && s[at] >= '0' && s[at] <= '9') {
        if (count == digits) {
            return -1;
        }
        if (count == 1 && value == 0) {
            return -1; /* a leading zero */
        }
        value = value * 10 + (s[at] - '0');
        count++;
        at++;
    }
    if (count == 0 || value > max) {
        return -1;
    }
    *out = value;
    return at;
}

/* A dotted quad at `at` (-1: none, what went before failed); the position after it, or
 * -1. */
static Py_ssize_t
quad(const unsigned char *s, Py_ssize_t at, Py_ssize_t size)
{
    long octet;
    if (at < 0) {
        return -1;
    }
    for (int i = 0; i < 4; i++) {
        if (i) {
            if (at >= size || s[at] != '.') {
                return -1;
            }
            at++;
        }
        at = number(s, at, size, 3, 255, &octet);
        if (at < 0) {
            return -1;
        }
    }
    return at;
}

static Py_ssize_t
space(const unsigned char *s, Py_ssize_t at, Py_ssize_t size)
{
    return (at >= 0 && at < size && s[at] == ' ') ? at + 1 : -1;
}

static PyObject *
v1_tcp4(PyObject *module, PyObject *data)
{
    static const char prefix[] = "PROXY TCP4 ";
    const Py_ssize_t prefix_size = (Py_ssize_t)sizeof(prefix) - 1;
    if (!PyBytes_Check(data)) {
        PyErr_SetString(PyExc_TypeError, "v1_tcp4() takes bytes");
        return NULL;
    }
    const unsigned char *s = (const unsigned char *)PyBytes_AS_STRING(data);
    Py_ssize_t size = PyBytes_GET_SIZE(data);
    if (size < prefix_size || memcmp(s, prefix, (size_t)prefix_size) != 0) {
        Py_RETURN_NONE;
    }
    Py_ssize_t source = prefix_size;
    Py_ssize_t source_end = quad(s, source, size);
    if (source_end < 0) {
        Py_RETURN_NONE;
    }
    Py_ssize_t at = quad(s, space(s, source_end, size), size);
    long source_port, destination_port;
    if (at < 0 || (at = space(s, at, size)) < 0 ||
        (at = number(s, at, size, 5, 65535, &source_port)) < 0 ||
        (at = space(s, at, size)) < 0 ||
        (at = number(s, at, size, 5, 65535, &destination_port)) < 0) {
        Py_RETURN_NONE;
    }
    if (at + 2 > size || s[at] != '\r' || s[at + 1] != '\n') {
        Py_RETURN_NONE;
    }
    return Py_BuildValue("(s#ln)", (const char *)s + source, source_end - source,
                         source_port, at + 2);
}

/* v2_plain(data): a v2 PROXY header of TCP over IPv4 or IPv6 without TLVs, whole at the
 * start of data: (source address as inet_ntop writes it, source port, header length,
 * whether IPv6), or None for anything else (another command, family or length, TLVs, an
 * incomplete header): the Python caller reads those (statewire.proxy._V2_PLAIN does the
 * same in Python). */
static PyObject *
v2_plain(PyObject *module, PyObject *data)
{
    static const unsigned char v4[16] = {0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D, 0x0A, 0x51,
                                         0x55, 0x49, 0x54, 0x0A, 0x21, 0x11, 0x00, 0x0C};
    static const unsigned char v6[16] = {0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D, 0x0A, 0x51,
                                         0x55, 0x49, 0x54, 0x0A, 0x21, 0x21, 0x00, 0x24};
    if (!PyBytes_Check(data)) {
        PyErr_SetString(PyExc_TypeError, "v2_plain() takes bytes");
        return NULL;
    }
    const unsigned char *s = (const unsigned char *)PyBytes_AS_STRING(data);
    Py_ssize_t size = PyBytes_GET_SIZE(data);
    char text[INET6_ADDRSTRLEN];
    if (size >= 28 && memcmp(s, v4, 16) == 0) {
        if (inet_ntop(AF_INET, s + 16, text, sizeof(text)) == NULL) {
            Py_RETURN_NONE;
        }
        return Py_BuildValue("(sinO)", text, (s[24] << 8) | s[25], (Py_ssize_t)28, Py_False);
    }
    if (size >= 52 && memcmp(s, v6, 16) == 0) {
        if (inet_ntop(AF_INET6, s + 16, text, sizeof(text)) == NULL) {
            Py_RETURN_NONE;
        }
        return Py_BuildValue("(sinO)", text, (s[48] << 8) | s[49], (Py_ssize_t)52, Py_True);
    }
    Py_RETURN_NONE;
}

static PyMethodDef methods[] = {
    {"v2_plain", (PyCFunction)v2_plain, METH_O,
     "A v2 TCP header without TLVs at the start of data: (source, port, length, v6) or None."},
    {"v1_tcp4", (PyCFunction)v1_tcp4, METH_O,
     "A strict v1 TCP4 PROXY line at the start of data: (source, port, length) or None."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "statewire._proxy_speedups",
    "Optional C accelerator for the PROXY protocol's common headers.", -1, methods,
};

PyMODINIT_FUNC
PyInit__proxy_speedups(void)
{
    return PyModule_Create(&module);
}
