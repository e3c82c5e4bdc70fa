#!/bin/busybox sh
# shellcheck shell=dash
# pebuilder live system: the initramfs's /init.
#
# Finds the boot medium, stacks /os/core.sqfs and the extensions listed in /ext/onboot.lst (each
# after its .dep closure) as overlayfs lower layers, puts a writable layer on top (the medium's
# /data/changes when it is writable and persistence is on, RAM otherwise), binds the medium's /os,
# /ext and /data into the new root and hands over to its init.
#
# Boot codes (Tiny Core style where the meaning is the same):
#   pb.media=LABEL=x|UUID=y|/dev/z   the medium (default: the label pebuilder wrote, see /etc/pebuilder);
#                                    UUID= and /dev/ name one device, taken as is
#   pb.id=ID|any                     of the media labelled x, the one whose /os/pebuilder.id holds ID
#                                    (any: the first that holds a system); see medium.sh
#   pb.ext=DEV[/dir]                 another folder of extensions (e.g. on a second disk)
#   pb.lst=NAME                      another onboot list (in the extension folders)
#   pb.persist=0|1                   keep changes on the medium (default 1 where it is writable)
#   pb.data=LABEL=x                  a disk for /data when the medium is read-only (default LABEL=PBDATA)
#   pb.toram                         copy /os and /ext to RAM, then release the medium
#   pb.wait=N                        seconds to wait for the medium (default 30)
#   pb.shell                         stop in this initramfs's shell before switching root
#   pb.debug                         trace this script
#   host=NAME                        host name
# Everything is plain POSIX sh and busybox: no udev, no systemd, no Python.

PATH=/bin:/sbin:/usr/bin:/usr/sbin
export PATH

/bin/busybox mkdir -p /bin /sbin /usr/bin /usr/sbin /proc /sys /dev /run /tmp /newroot
/bin/busybox --install -s
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev 2>/dev/null
mount -t tmpfs -o mode=0755,nosuid,nodev tmpfs /run
mkdir -p /run/pb/medium /run/pb/layers /run/pb/ram /run/pb/extdir /run/pb/data
exec </dev/console >/dev/console 2>&1

say() { echo "pebuilder: $*"; }

rescue() {
	say "$*"
	say "dropping to a shell (exit it to try to continue)"
	setsid cttyhack sh
}

# -- settings: baked in at build time, then boot codes ------------------------------------------------
MEDIA=""
MEDIUM_ID=""
DATA_LABEL="PBDATA"
INIT=/sbin/init
FETCH_URL=""
[ -f /etc/pebuilder/boot.conf ] && . /etc/pebuilder/boot.conf
EXTRA_EXT=""
DATA_GIVEN=""
LIST=""
PERSIST=""
TORAM=""
WAIT=30
STOP=""
for word in $(cat /proc/cmdline); do
	case "$word" in
	pb.media=*) MEDIA="${word#pb.media=}" ;;
	pb.id=*) MEDIUM_ID="${word#pb.id=}" ;;
	pb.ext=*) EXTRA_EXT="${word#pb.ext=}" ;;
	pb.lst=*) LIST="${word#pb.lst=}" ;;
	pb.persist=*) PERSIST="${word#pb.persist=}" ;;
	pb.data=*) DATA_LABEL="${word#pb.data=LABEL=}" DATA_GIVEN=1 ;;
	pb.toram) TORAM=1 ;;
	pb.fetch=*) FETCH_URL="${word#pb.fetch=}" ;;
	pb.wait=*) WAIT="${word#pb.wait=}" ;;
	pb.shell) STOP=1 ;;
	pb.debug) set -x ;;
	host=*) echo "${word#host=}" > /run/pb/hostname ;;
	esac
done
case "$WAIT" in '' | *[!0-9]*) WAIT=30 ;; esac

# -- kernel modules the boot needs, in dependency order (written at build time) ----------------------
KVER=$(uname -r)
if [ -f /etc/pebuilder/modules ]; then
	while read -r mod; do
		[ -n "$mod" ] && insmod "/lib/modules/$KVER/$mod" 2>/dev/null
	done < /etc/pebuilder/modules
fi

# -- the medium: a disk or CD, this initramfs itself (netboot, embedded), or a URL (netboot, fetch) --
# shellcheck source=medium.sh
. /lib/pebuilder/medium.sh

# Other disks (pb.ext=, pb.data=): findfs understands LABEL= and UUID=; a plain /dev path is taken as is.
find_dev() {
	case "$1" in
	/dev/*) [ -b "$1" ] && echo "$1" ;;
	*) findfs "$1" 2>/dev/null ;;
	esac
}

mount_any() { # DEV DIR [ro] : the medium may be ISO 9660, ext4 or FAT; try writable first
	if [ -z "$3" ]; then
		mount -o rw "$1" "$2" 2>/dev/null && return 0
	fi
	mount -o ro "$1" "$2" 2>/dev/null
}

devices() {
	for d in /sys/class/block/*; do [ -e "$d" ] && printf '%s ' "${d##*/}"; done
}

net_up() { # DHCP on the first interface that answers, with the system's own udhcpc hook
	for n in /sys/class/net/*; do
		n=${n##*/}
		[ "$n" = lo ] && continue
		ifconfig "$n" up 2>/dev/null
		udhcpc -q -n -t 10 -T 2 -i "$n" -s /usr/share/udhcpc/default.script >/dev/null 2>&1 && return 0
	done
	return 1
}

fetch_system() { # every file of the manifest from $FETCH_URL into RAM, each checked against its sha256
	mount -t tmpfs -o mode=0755 tmpfs /run/pb/ram
	net_up || rescue "netboot: no DHCP lease on any interface ($(ls /sys/class/net | tr '\n' ' ')); cannot fetch $FETCH_URL"
	while read -r sum rel; do
		[ -n "$rel" ] || continue
		mkdir -p "/run/pb/ram/${rel%/*}"
		say "fetching $FETCH_URL/$rel"
		if ! wget -q -O "/run/pb/ram/$rel" "$FETCH_URL/$rel"; then
			rescue "netboot: cannot download $FETCH_URL/$rel"
		fi
		got=$(sha256sum "/run/pb/ram/$rel" | cut -d ' ' -f 1)
		if [ "$got" != "$sum" ]; then
			rm -f "/run/pb/ram/$rel"
			rescue "netboot: $FETCH_URL/$rel has sha256 $got, not the expected $sum; refusing it"
		fi
	done < /etc/pebuilder/fetch.sha256
	echo "$FETCH_URL" > /run/pb/fetch-url
	[ -f /etc/pebuilder/install.sha256 ] && cp /etc/pebuilder/install.sha256 /run/pb/install.sha256
}

MEDIUM=/run/pb/medium
WRITABLE=""
if [ -f /os/core.sqfs ]; then
	# Netboot, embedded: this initramfs carries the system. Move it to a tmpfs under /run first:
	# switch_root empties the initramfs, and /run moves into the system.
	mount -t tmpfs -o mode=0755 tmpfs /run/pb/ram
	mv /os /ext /run/pb/ram/
	[ -f /etc/pebuilder/install.sha256 ] && cp /etc/pebuilder/install.sha256 /run/pb/install.sha256
	MEDIUM=/run/pb/ram
	say "netboot: the system came with the initramfs"
elif [ -n "$FETCH_URL" ] && [ -f /etc/pebuilder/fetch.sha256 ]; then
	fetch_system
	MEDIUM=/run/pb/ram
	say "netboot: the system came from $FETCH_URL"
else
	wanted="$MEDIA$([ -n "$MEDIUM_ID" ] && [ "$MEDIUM_ID" != any ] && echo " with pb.id=$MEDIUM_ID")"
	i=0
	while [ "$i" -le "$WAIT" ]; do
		pick_medium "$MEDIA" "$MEDIUM_ID"
		[ -n "$DEV" ] && break
		[ "$i" = 3 ] && say "waiting up to $WAIT s for the boot medium $wanted ..."
		sleep 1
		i=$((i + 1))
	done
	if [ -z "$DEV" ] && [ -n "$SEEN" ]; then
		rescue "cannot find the boot medium $wanted (waited $WAIT s); media labelled ${MEDIA#LABEL=}: $SEEN. Boot with pb.id=any to take the first that holds a system, or pb.media=/dev/NAME to name one."
		pick_medium "$MEDIA" "$MEDIUM_ID"
	elif [ -z "$DEV" ]; then
		rescue "cannot find the boot medium $wanted (waited $WAIT s; block devices: $(devices)). Check the pb.media= boot code or the medium's label."
		pick_medium "$MEDIA" "$MEDIUM_ID"
	fi
	dev=$DEV
	if [ "$SYSTEMS" -gt 1 ] && { [ -z "$MEDIUM_ID" ] || [ "$MEDIUM_ID" = any ]; }; then
		say "$SYSTEMS media carry ${MEDIA#LABEL=} ($SEEN) and no pb.id tells them apart: taking $dev"
	fi
	if ! mount_any "$dev" "$MEDIUM"; then
		rescue "cannot mount the boot medium $dev ($MEDIA)"
	fi
	if [ ! -f "$MEDIUM/os/core.sqfs" ]; then
		rescue "$dev ($MEDIA) holds no /os/core.sqfs; is this a pebuilder medium?"
	fi
	ident=$(head -c 64 "$MEDIUM/os/pebuilder.id" 2>/dev/null | tr -cd '0-9a-f')
	case "$MEDIUM_ID" in
	'' | any | "$ident") ;;
	*) say "note: $dev carries id ${ident:-none}, not $MEDIUM_ID; taken as is, since pb.media=$MEDIA names it" ;;
	esac
	echo "$dev" > /run/pb/medium-dev # pb-provision never writes over the disk it came from
	touch "$MEDIUM/.pb-write-test" 2>/dev/null && rm -f "$MEDIUM/.pb-write-test" && WRITABLE=1
	say "medium $dev ($MEDIA)$([ -n "$WRITABLE" ] && echo ', writable' || echo ', read-only')${ident:+, id $ident}"
fi

OS="$MEDIUM/os"
EXT="$MEDIUM/ext"
if [ -n "$TORAM" ] && [ "$MEDIUM" = /run/pb/medium ]; then
	say "copying /os and /ext to RAM (pb.toram)"
	mount -t tmpfs -o mode=0755 tmpfs /run/pb/ram
	cp -a "$MEDIUM/os" "$MEDIUM/ext" /run/pb/ram/ 2>/dev/null
	OS=/run/pb/ram/os
	EXT=/run/pb/ram/ext
fi

# -- layers: core, then the onboot extensions with their .dep closure ------------------------------
LOWER=""
add_layer() { # NAME FILE
	mkdir -p "/run/pb/layers/$1"
	if ! mount -t squashfs -o loop,ro "$2" "/run/pb/layers/$1"; then
		say "cannot mount $2; left out"
		return 1
	fi
	if [ -z "$LOWER" ]; then LOWER="/run/pb/layers/$1"; else LOWER="/run/pb/layers/$1:$LOWER"; fi
	return 0
}

add_layer core "$OS/core.sqfs" || rescue "cannot mount $OS/core.sqfs (squashfs module missing?)"

EXTDIRS="$EXT"
if [ -n "$EXTRA_EXT" ]; then
	xdev="${EXTRA_EXT%%/*}"
	xdir="${EXTRA_EXT#"$xdev"}"
	case "$EXTRA_EXT" in /dev/*) xdev="/dev/$(echo "${EXTRA_EXT#/dev/}" | cut -d/ -f1)"; xdir="${EXTRA_EXT#"$xdev"}" ;; esac
	xd=$(find_dev "$xdev")
	if [ -n "$xd" ] && mount_any "$xd" /run/pb/extdir ro; then
		EXTDIRS="$EXTDIRS /run/pb/extdir${xdir:-/ext}"
	else
		say "pb.ext=$EXTRA_EXT: cannot find or mount $xdev; ignored"
	fi
fi

find_ext() { # NAME -> path of NAME (.tcz or .sqfs) in the extension folders
	for d in $EXTDIRS; do
		for f in "$d/$1" "$d/$1.tcz" "$d/$1.sqfs" "$d/optional/$1" "$d/optional/$1.tcz"; do
			[ -f "$f" ] && { echo "$f"; return 0; }
		done
	done
	return 1
}

LOADED=" "
load_ext() { # NAME CHAIN: its dependencies first (depth first, as tce-load), each once
	local n f d
	n="${1%.tcz}"
	n="${n%.sqfs}"
	case "$LOADED" in *" $n "*) return 0 ;; esac
	case " $2 " in *" $n "*) say "dependency loop: $2 $n"; return 0 ;; esac
	f=$(find_ext "$n") || { say "extension $n not found (needed by:${2:- onboot list})"; return 1; }
	if [ -f "$f.dep" ]; then
		for d in $(tr -d ' \t\r' < "$f.dep"); do
			load_ext "$d" "$2 $n"
		done
	fi
	f=$(find_ext "$n")
	add_layer "$n" "$f" && LOADED="$LOADED$n " && say "extension $n"
}

lst="${LIST:-onboot.lst}"
for d in $EXTDIRS; do
	[ -f "$d/$lst" ] || continue
	for name in $(sed 's/#.*//' "$d/$lst"); do
		load_ext "$name" ""
	done
done

# -- the writable layer ------------------------------------------------------------------------------
# A disk labelled for data (pb.data=, or the default label when the medium is read-only) wins;
# else the medium's own /data when it is writable.
DATA=""
if [ -n "$DATA_GIVEN" ] || [ -z "$WRITABLE" ] || [ -n "$TORAM" ]; then
	ddev=$(find_dev "LABEL=$DATA_LABEL")
	if [ -n "$ddev" ] && mount_any "$ddev" /run/pb/data; then
		DATA=/run/pb/data
		say "data disk $ddev (LABEL=$DATA_LABEL)"
	fi
fi
if [ -z "$DATA" ] && [ -n "$WRITABLE" ] && [ -z "$TORAM" ]; then
	mkdir -p "$MEDIUM/data"
	DATA="$MEDIUM/data"
fi
[ -z "$PERSIST" ] && PERSIST=1
if [ -n "$DATA" ] && [ "$PERSIST" = 1 ]; then
	UPPER="$DATA/changes"
	say "changes are kept in /data/changes"
else
	grep -q " /run/pb/ram " /proc/mounts || mount -t tmpfs -o mode=0755 tmpfs /run/pb/ram
	UPPER=/run/pb/ram/changes
	say "changes are kept in RAM"
fi
mkdir -p "$UPPER/upper" "$UPPER/work"
# Links tce-load made into /run/ext last time would now dangle and hide the same files of extensions
# stacked as layers at this boot: remove them from the kept changes.
find "$UPPER/upper" -type l 2>/dev/null | while read -r l; do
	case "$(readlink "$l")" in /run/ext/*) rm -f "$l" ;; esac
done
if ! mount -t overlay overlay -o "lowerdir=$LOWER,upperdir=$UPPER/upper,workdir=$UPPER/work" /newroot; then
	rescue "cannot mount the overlay (lowerdir=$LOWER)"
fi

# -- /os, /ext and /data in the system ---------------------------------------------------------------
for d in os ext data; do mkdir -p "/newroot/$d"; done
mount --bind "$OS" /newroot/os
mount --bind "$EXT" /newroot/ext 2>/dev/null || mkdir -p "/newroot/ext"
if [ -n "$DATA" ]; then
	mount --bind "$DATA" /newroot/data
else
	mount -t tmpfs -o mode=0755 tmpfs /newroot/data
fi
[ -f /run/pb/hostname ] && cp /run/pb/hostname /newroot/etc/hostname
echo "$LOADED" > /run/pb/loaded

if [ -n "$STOP" ]; then
	say "pb.shell: stopping before switch_root (the system is mounted at /newroot; exit to continue)"
	setsid cttyhack sh
fi

for fs in dev proc sys run; do
	mkdir -p "/newroot/$fs"
	mount --move "/$fs" "/newroot/$fs"
done
say "switching to the system ($INIT)"
exec switch_root /newroot "$INIT"
