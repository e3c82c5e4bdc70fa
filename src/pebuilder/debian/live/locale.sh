# shellcheck shell=sh
# pebuilder live system: /etc/profile.d/locale.sh, the system's locale for shells and services.
#
# Debian keeps the system's locale in /etc/default/locale (LANG=C.UTF-8 here) and pam_env hands it
# to logins. The live system has no PAM on its busybox logins, so this file does it: /etc/profile
# reads it for every login shell (serial console, getty, autologin, ssh) and rcS for the services it
# starts. A variable that is set and not empty already (a LANG=... boot code, ssh's SendEnv, the
# caller's own) is kept. Only the locale variables are taken from the file, never other lines.
if [ -r /etc/default/locale ]; then
	while IFS='=' read -r pb_key pb_value || [ -n "$pb_key" ]; do
		case "$pb_key" in
		LANG | LANGUAGE | LC_ALL | LC_CTYPE | LC_NUMERIC | LC_TIME | LC_COLLATE | LC_MONETARY | LC_MESSAGES | \
			LC_PAPER | LC_NAME | LC_ADDRESS | LC_TELEPHONE | LC_MEASUREMENT | LC_IDENTIFICATION)
			eval "pb_set=\${$pb_key:+set}"
			if [ -z "$pb_set" ]; then
				pb_value=${pb_value#\"}
				pb_value=${pb_value%\"}
				pb_value=${pb_value#\'}
				pb_value=${pb_value%\'}
				export "$pb_key=$pb_value"
			fi
			;;
		esac
	done < /etc/default/locale
	unset pb_key pb_value pb_set
fi
