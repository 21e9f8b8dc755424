#!/bin/sh
# Regenerates tests/data/two-socket: a 2-socket server (2 NUMA nodes, 2 x 8 cores with
# hyperthreads, Intel-style numbering: node 0 = CPUs 0-7,16-23, node 1 = 8-15,24-31) with
#   - a dual-port NIC (ens1f0/ens1f1, PCI 0000:81:00.0/.1, 9 MSI-X vectors each) on node 1,
#     negotiated at x4 in an x8-capable slot;
#   - a RAID controller (PCI 0000:02:00.0, 8 vectors, disk sda) on node 0;
#   - /proc/interrupts skewed the way field reports show: every NIC and RAID vector on CPU 0;
#   - irqbalance running; sysctls, governor and block-queue settings the doctor must flag;
#   - stacked devices: bond0 over both ports, dm-0 over sda.
# Usage: sh make-two-socket.sh [DIR]   (default: the directory next to this script)
set -eu
here=$(cd "$(dirname "$0")" && pwd)
R=${1:-$here/two-socket}
rm -rf "$R"
mkdir -p "$R"
w() { mkdir -p "$(dirname "$R/$1")"; printf '%s\n' "$2" > "$R/$1"; }
l() { mkdir -p "$(dirname "$R/$1")"; ln -s "$2" "$R/$1"; }

S=sys/devices/system
w $S/cpu/online 0-31
w $S/cpu/possible 0-31
for cpu in $(seq 0 31); do
  c=$((cpu % 16)); core=$((c % 8)); pkg=$((c / 8))
  w $S/cpu/cpu$cpu/topology/core_id $core
  w $S/cpu/cpu$cpu/topology/physical_package_id $pkg
  w $S/cpu/cpu$cpu/topology/thread_siblings_list "$c,$((c + 16))"
  w $S/cpu/cpu$cpu/cpufreq/scaling_governor powersave
  w $S/cpu/cpu$cpu/cpufreq/scaling_available_governors "performance powersave"
done
w $S/node/online 0-1
w $S/node/possible 0-1
w $S/node/node0/cpulist 0-7,16-23
w $S/node/node1/cpulist 8-15,24-31
w $S/node/node0/meminfo "Node 0 MemTotal:       131879260 kB"
w $S/node/node1/meminfo "Node 1 MemTotal:       132103488 kB"

# RAID controller on node 0.
P0=sys/devices/pci0000:00/0000:00:02.0
RAID=$P0/0000:02:00.0
w $P0/numa_node 0
w $RAID/numa_node 0
w $RAID/local_cpulist 0-7,16-23
w $RAID/vendor 0x1000
w $RAID/device 0x0016
w $RAID/class 0x010400
w $RAID/irq 34
w $RAID/current_link_speed "8.0 GT/s PCIe"
w $RAID/max_link_speed "8.0 GT/s PCIe"
w $RAID/current_link_width 8
w $RAID/max_link_width 8
for irq in $(seq 60 67); do w $RAID/msi_irqs/$irq msix; done
SCSI=$RAID/host0/target0:2:0/0:2:0:0
w $SCSI/vendor "LSI     "
w $SCSI/model "MR9361-8i       "
SDA=$SCSI/block/sda
w $SDA/size 7811891200
w $SDA/queue/scheduler "[mq-deadline] kyber bfq none"
w $SDA/queue/nr_requests 256
w $SDA/queue/read_ahead_kb 128
w $SDA/queue/max_sectors_kb 256
w $SDA/queue/max_hw_sectors_kb 4096
w $SDA/queue/rotational 1
l $SDA/device ../../../0:2:0:0
w $SDA/sda1/partition 1
w $SDA/sda1/size 7811889152

# Dual-port NIC on node 1.
P1=sys/devices/pci0000:80/0000:80:02.0
w $P1/numa_node 1
port=0
for fn in 0 1; do
  NIC=$P1/0000:81:00.$fn
  IF=ens1f$fn
  w $NIC/numa_node 1
  w $NIC/local_cpulist 8-15,24-31
  w $NIC/vendor 0x8086
  w $NIC/device 0x1572
  w $NIC/class 0x020000
  w $NIC/irq $((40 + fn))
  w $NIC/current_link_speed "8.0 GT/s PCIe"
  w $NIC/max_link_speed "8.0 GT/s PCIe"
  w $NIC/current_link_width 4
  w $NIC/max_link_width 8
  base=$((100 + 10 * fn))
  for irq in $(seq $base $((base + 8))); do w $NIC/msi_irqs/$irq msix; done
  w $NIC/net/$IF/mtu 9000
  w $NIC/net/$IF/address "3c:fd:fe:00:00:0$fn"
  w $NIC/net/$IF/speed 10000
  l $NIC/net/$IF/device ../../../0000:81:00.$fn
  l sys/class/net/$IF ../../devices/pci0000:80/0000:80:02.0/0000:81:00.$fn/net/$IF
  l sys/bus/pci/devices/0000:81:00.$fn ../../../devices/pci0000:80/0000:80:02.0/0000:81:00.$fn
done
l sys/bus/pci/devices/0000:02:00.0 ../../../${RAID#sys/}
l sys/bus/pci/devices/0000:00:02.0 ../../../${P0#sys/}
l sys/bus/pci/devices/0000:80:02.0 ../../../${P1#sys/}

# Virtual and stacked devices.
w sys/devices/virtual/net/lo/mtu 65536
l sys/class/net/lo ../../devices/virtual/net/lo
w sys/devices/virtual/net/bond0/mtu 9000
l sys/devices/virtual/net/bond0/lower_ens1f0 ../../../pci0000:80/0000:80:02.0/0000:81:00.0/net/ens1f0
l sys/devices/virtual/net/bond0/lower_ens1f1 ../../../pci0000:80/0000:80:02.0/0000:81:00.1/net/ens1f1
l sys/class/net/bond0 ../../devices/virtual/net/bond0
w sys/devices/virtual/block/dm-0/size 7811889152
w sys/devices/virtual/block/dm-0/queue/scheduler none
w sys/devices/virtual/block/dm-0/queue/rotational 1
l sys/devices/virtual/block/dm-0/slaves/sda1 ../../../../../${SDA#sys/}/sda1
l sys/block/sda ../${SDA#sys/}
l sys/block/dm-0 ../devices/virtual/block/dm-0
l sys/class/block/sda ../../${SDA#sys/}
l sys/class/block/sda1 ../../${SDA#sys/}/sda1
l sys/class/block/dm-0 ../../devices/virtual/block/dm-0

# /proc/interrupts: 32 CPU columns, every device vector counted on CPU0 only.
row() { # irq count0 chip hwirq name
  printf '%4s:' "$1"
  printf ' %10s' "$2"
  for c in $(seq 1 31); do printf ' %10s' 0; done
  printf '  %s %s  %s\n' "$3" "$4" "$5"
}
mkdir -p "$R/proc"
{
  printf '     '
  for c in $(seq 0 31); do printf ' %10s' "CPU$c"; done
  printf '\n'
  row 0 41 IO-APIC 2-edge timer
  row 8 1 IO-APIC 8-edge rtc0
  for k in $(seq 0 7); do
    row $((60 + k)) $((20000 + k)) IR-PCI-MSI-0000:02:00.0 $k-edge megasas0-msix$k
  done
  for fn in 0 1; do
    base=$((100 + 10 * fn))
    row $base $((12 + fn)) IR-PCI-MSI-0000:81:00.$fn 0-edge ens1f$fn
    for k in $(seq 0 7); do
      if [ $fn = 0 ]; then n=$((1000000 + 1000 * k)); else n=$((500000 + 100 * k)); fi
      row $((base + 1 + k)) $n IR-PCI-MSI-0000:81:00.$fn $((k + 1))-edge ens1f$fn-TxRx-$k
    done
  done
  printf '%4s:' NMI; for c in $(seq 0 31); do printf ' %10s' 3; done; printf '   Non-maskable interrupts\n'
  printf '%4s:' LOC; for c in $(seq 0 31); do printf ' %10s' 100000; done; printf '   Local timer interrupts\n'
  printf '%4s: %10s\n' ERR 0
  printf '%4s: %10s\n' MIS 0
} > "$R/proc/interrupts"

# /proc/irq: every vector may run anywhere (0-31) but the kernel delivered all to CPU 0.
for irq in 0 8 $(seq 60 67) $(seq 100 108) $(seq 110 118); do
  w proc/irq/$irq/smp_affinity ffffffff
  w proc/irq/$irq/smp_affinity_list 0-31
  w proc/irq/$irq/effective_affinity_list 0
done

# Sysctls as a distribution installs them (tcp_low_latency left out: a no-op since 4.14),
# except tcp_timestamps, which an old tuning guide had switched off.
w proc/sys/net/core/rmem_max 212992
w proc/sys/net/core/wmem_max 212992
w proc/sys/net/core/rmem_default 212992
w proc/sys/net/core/wmem_default 212992
w proc/sys/net/core/netdev_max_backlog 1000
w proc/sys/net/ipv4/tcp_sack 1
w proc/sys/net/ipv4/tcp_timestamps 0
printf '4096\t131072\t6291456\n' > "$R/proc/sys/net/ipv4/tcp_rmem"
printf '4096\t16384\t4194304\n' > "$R/proc/sys/net/ipv4/tcp_wmem"
printf '1540320\t2053761\t3080640\n' > "$R/proc/sys/net/ipv4/tcp_mem"
w proc/sys/vm/swappiness 60
w proc/sys/vm/zone_reclaim_mode 1
w proc/sys/vm/dirty_ratio 20
w proc/sys/vm/dirty_background_ratio 10
w proc/sys/vm/dirty_expire_centisecs 3000
w proc/sys/vm/dirty_writeback_centisecs 500
w proc/sys/kernel/osrelease 5.15.0-91-generic
w proc/meminfo "MemTotal:       263982748 kB"

# Processes: irqbalance is running.
w proc/1/comm systemd
w proc/812/comm irqbalance
w proc/901/comm sshd
