#!/usr/bin/env bash
# make demo: arrives with the pipeline issue (#3).
echo "demo: arrives with the pipeline issue"
