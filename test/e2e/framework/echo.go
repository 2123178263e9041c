package framework

import (
	"io"
	"net"
	"sync"
	"sync/atomic"
)

// EchoServer is a TCP server that writes back what it reads: the target of the member pods' forwarded ports, so
// that a port-forward test sees its bytes cross host, Tether, member and kwok to a real socket and back.
type EchoServer struct {
	ln       net.Listener
	received atomic.Int64
	wg       sync.WaitGroup
}

// StartEchoServer listens on a free loopback port.
func StartEchoServer() (*EchoServer, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	e := &EchoServer{ln: ln}
	e.wg.Add(1)
	go e.serve()
	return e, nil
}

// Addr is host:port of the server.
func (e *EchoServer) Addr() string { return e.ln.Addr().String() }

// Received is how many bytes the server has read so far, over all connections.
func (e *EchoServer) Received() int64 { return e.received.Load() }

func (e *EchoServer) serve() {
	defer e.wg.Done()
	for {
		conn, err := e.ln.Accept()
		if err != nil {
			return // closed
		}
		go func() {
			defer conn.Close()
			_, _ = io.Copy(conn, counting{conn, &e.received})
		}()
	}
}

// Close stops accepting connections.
func (e *EchoServer) Close() {
	_ = e.ln.Close()
	e.wg.Wait()
}

type counting struct {
	r io.Reader
	n *atomic.Int64
}

func (c counting) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n.Add(int64(n))
	return n, err
}
