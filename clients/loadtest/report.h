/*
 * report.h - a run's results, as a table for people (stdout) and as JSON (--json).
 */
#ifndef EARSHOT_LT_REPORT_H
#define EARSHOT_LT_REPORT_H

#include "run.h"
#include "server_metrics.h"

#include <cjson/cJSON.h>
#include <stdio.h>

void report_print(FILE *f, const lt_run *r, const server_metrics *before, const server_metrics *after);
/* The run as a JSON object; per_session adds one entry per session. NULL when out of memory. */
cJSON *report_json(const lt_run *r, const server_metrics *before, const server_metrics *after, int per_session);
/* Sessions that failed, and why, in one line (for the end of the table and for stderr). */
void report_failures(FILE *f, const lt_run *r);

#endif
