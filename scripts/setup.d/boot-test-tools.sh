#!/bin/sh
# acpica-tools (iasl) for the boot-table unit test: tests/unit/hw/test_boot_tables
# disassembles kvmlite's ACPI tables and recompiles the DSDT with it.
set -eu
command -v iasl >/dev/null 2>&1 && exit 0
SUDO=""
[ "$(id -u)" = 0 ] || SUDO=sudo
export DEBIAN_FRONTEND=noninteractive
echo "boot-test-tools: installing acpica-tools"
$SUDO apt-get install -y -qq acpica-tools || {
	$SUDO apt-get update -qq
	$SUDO apt-get install -y -qq acpica-tools
}
