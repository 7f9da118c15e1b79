/*
 * version: the one release number, printed by `sharemaild --version` and
 * `sharemail --version`. Bump it with each release (README, man pages follow).
 */
#ifndef SHAREMAIL_UTIL_VERSION_H
#define SHAREMAIL_UTIL_VERSION_H

#define SHAREMAIL_VERSION "0.5.0"

#endif
