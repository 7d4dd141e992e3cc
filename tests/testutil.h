/* Helpers shared by the Check suites. */
#ifndef LMP_TESTUTIL_H
#define LMP_TESTUTIL_H

#include <stddef.h>
#include <stdint.h>

/* Absolute path of tests/data/<rel> (static buffer rotation of 8 slots). */
const char *t_data(const char *rel);
/* Absolute path of the program bin/<name> of the variant under test. */
const char *t_bin(const char *name);
/* A fresh empty temporary directory (removed by t_rmtree). Caller frees. */
char *t_tmpdir(void);
void t_rmtree(const char *dir);

/* Run argv (argv[0] a path), capture stdout/stderr (malloc'd, NUL-terminated,
 * may be NULL if not wanted) and return the exit code (128+sig if killed). */
int t_run(char *const argv[], char **out, char **err);
/* Same with a shell command line (for pipelines); uses /bin/sh -c. */
int t_sh(const char *cmd, char **out, char **err);

/* Write / read whole files (abort the test on failure). */
void t_write(const char *path, const void *data, size_t n);
unsigned char *t_slurp(const char *path, size_t *n);

/* A copy of the f32 matrix src quantized with the project's default q4
 * (LMP_Q4_DEFAULT_SCHEME / _GROUP, with the search); *buf receives the
 * malloc'd bytes the view points into (the caller frees it). */
struct lmp_mat;
struct lmp_mat t_q4_default_view(const struct lmp_mat *src, void **buf);

/* *q = a copy of the f32 model fp with every matrix (7 per layer, the
 * embedding and, when untied, lm_head) in the default q4 format, norms and
 * config shared with fp (which must outlive q); checked with
 * lmp_model_check. lmp_model_close(q) frees the quantized bytes. */
struct lmp_model;
void t_q4_default_model(const struct lmp_model *fp, struct lmp_model *q);

#endif
