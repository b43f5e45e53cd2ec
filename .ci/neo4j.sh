#!/usr/bin/env bash
# Fetch the Neo4j Community 5.26 jars (Maven Central) into the hippograph cache, once. Idempotent: a second run
# finds the jars and does nothing. Cache: $HIPPOGRAPH_NEO4J_HOME or ~/.cache/hippograph/neo4j-5.26 (not in git).
set -euo pipefail
cd "$(dirname "$0")/.."
command -v java >/dev/null || { echo "neo4j.sh: Java 17+ is needed (apt-get install openjdk-17-jre-headless)" >&2; exit 1; }
command -v mvn >/dev/null || { echo "neo4j.sh: Maven is needed (apt-get install maven)" >&2; exit 1; }
home="${HIPPOGRAPH_NEO4J_HOME:-$HOME/.cache/hippograph/neo4j-5.26}"
if [ -f "$home/lib/.complete" ] && ls "$home"/lib/neo4j-kernel-*.jar >/dev/null 2>&1; then
  echo "neo4j jars present in $home/lib"
  exit 0
fi
mkdir -p "$home"
mvn -q -B -f stores/tree/neo4j_server/pom.xml dependency:copy-dependencies -DoutputDirectory="$home/lib"
echo "neo4j 5.26" > "$home/lib/.complete"
echo "neo4j jars fetched into $home/lib ($(ls "$home/lib" | wc -l) files)"
