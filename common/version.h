/* lmpack's version, recorded in reports (verify --quality --json). */
#ifndef LMP_VERSION_H
#define LMP_VERSION_H

#define LMP_VERSION "0.1.0"

#endif
