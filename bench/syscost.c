// What a system call costs on this machine, apart from its work: the bound on what an
// io_uring data path could save by batching (docs/performance.md, "Not done").
//
//   gcc -O2 -o /tmp/syscost bench/syscost.c && /tmp/syscost
//
// Times 5,000,000 getppid calls (entry and exit only), as many recv calls on an empty
// non-blocking loopback TCP socket (EAGAIN: entry, exit and the socket's lookup), and
// 1,000,000 pairs of epoll_ctl ADD and DEL of that socket (what tokio does once per
// socket; an io_uring path registers nothing).
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdio.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec / 1e9;
}

int main(void) {
    const long n = 5000000;
    double t0 = now();
    for (long i = 0; i < n; i++) syscall(SYS_getppid);
    double t1 = now();
    printf("getppid:              %6.1f ns per call\n", (t1 - t0) / n * 1e9);

    int l = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {0};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(0x7f000001);
    socklen_t len = sizeof a;
    if (l < 0 || bind(l, (void *)&a, sizeof a) || listen(l, 1) || getsockname(l, (void *)&a, &len)) {
        perror("listen");
        return 1;
    }
    int c = socket(AF_INET, SOCK_STREAM, 0);
    if (c < 0 || connect(c, (void *)&a, sizeof a)) {
        perror("connect");
        return 1;
    }
    int s = accept(l, 0, 0);
    if (s < 0 || fcntl(s, F_SETFL, O_NONBLOCK)) {
        perror("accept");
        return 1;
    }
    char buf[64];
    t0 = now();
    for (long i = 0; i < n; i++) recv(s, buf, sizeof buf, 0);
    t1 = now();
    printf("recv, nothing to read: %6.1f ns per call\n", (t1 - t0) / n * 1e9);

    int ep = epoll_create1(0);
    struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT | EPOLLET | EPOLLRDHUP};
    ev.data.fd = s;
    t0 = now();
    for (long i = 0; i < n / 5; i++) {
        epoll_ctl(ep, EPOLL_CTL_ADD, s, &ev);
        epoll_ctl(ep, EPOLL_CTL_DEL, s, 0);
    }
    t1 = now();
    printf("epoll_ctl ADD + DEL:   %6.1f ns per pair\n", (t1 - t0) / (n / 5) * 1e9);
    return 0;
}
