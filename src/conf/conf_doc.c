/*
 * conf_doc: the schema as documentation. The same function writes the KEYS table
 * of doc/sharemail.conf.5 (`sharemail config-doc --man`) and is what test_conf
 * compares the man page against, so the page cannot fall behind the code.
 */
#include <stdio.h>
#include <string.h>

#include "conf/conf.h"

/*
 * Writes s as roff text: backslash and hyphen-minus escaped (groff would print
 * "-" as a hyphen, wrong in option values), and a leading '.' or '\'' guarded
 * by "\&" so it cannot be read as a request.
 */
static void roff_put(FILE *out, const char *s)
{
	if (*s == '.' || *s == '\'')
		fputs("\\&", out);
	for (; *s; s++) {
		if (*s == '\\')
			fputs("\\e", out);
		else if (*s == '-')
			fputs("\\-", out);
		else
			fputc(*s, out);
	}
}

/*
 * One tagged paragraph a key: tbl(1) tables with a wrapped description column
 * are unreadable at 80 columns, so the table is a .TP list, as in sshd_config(5).
 * Keys that take effect on SIGHUP say "reloads on SIGHUP" after their type.
 */
int conf_doc_man(FILE *out)
{
	for (size_t i = 0; i < conf_schema_count(); i++) {
		const struct conf_key_doc *d = conf_schema_doc(i);
		fputs(".TP\n.B ", out);
		roff_put(out, d->name);
		fputs("\n", out);
		roff_put(out, d->type);
		if (d->def[0]) {
			fputs("; default \\fB", out);
			roff_put(out, d->def);
			fputs("\\fR", out);
		}
		if (d->range[0]) {
			fputs("; values \\fB", out);
			roff_put(out, d->range);
			fputs("\\fR", out);
		}
		if (d->reloads)
			fputs("; reloads on SIGHUP", out);
		fputs(".\n.br\n", out);
		roff_put(out, d->doc);
		fputc('\n', out);
	}
	return ferror(out) ? -1 : 0;
}

int conf_doc_text(FILE *out)
{
	int wname = 3, wtype = 4, wdef = 7, wrange = 5;
	for (size_t i = 0; i < conf_schema_count(); i++) {
		const struct conf_key_doc *d = conf_schema_doc(i);
		if ((int)strlen(d->name) > wname)
			wname = (int)strlen(d->name);
		if ((int)strlen(d->type) > wtype)
			wtype = (int)strlen(d->type);
		if ((int)strlen(d->def) > wdef)
			wdef = (int)strlen(d->def);
		if ((int)strlen(d->range) > wrange)
			wrange = (int)strlen(d->range);
	}
	fprintf(out, "%-*s  %-*s  %-*s  %-*s  %-7s  %s\n", wname, "KEY", wtype, "TYPE", wdef,
	        "DEFAULT", wrange, "RANGE", "SIGHUP", "DESCRIPTION");
	for (size_t i = 0; i < conf_schema_count(); i++) {
		const struct conf_key_doc *d = conf_schema_doc(i);
		fprintf(out, "%-*s  %-*s  %-*s  %-*s  %-7s  %s\n", wname, d->name, wtype, d->type,
		        wdef, d->def[0] ? d->def : "-", wrange, d->range[0] ? d->range : "-",
		        d->reloads ? "reload" : "restart", d->doc);
	}
	return ferror(out) ? -1 : 0;
}
