package fakeoauth

import (
	"context"
	"net"
	"net/http"
	"time"
)

// server is a started HTTP server on a loopback port.
type server struct {
	srv *http.Server
	ln  net.Listener
	URL string
}

func startServer(addr string, h http.Handler) (*server, error) {
	if addr == "" {
		addr = "127.0.0.1:0"
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	s := &server{
		srv: &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second},
		ln:  ln,
		URL: "http://" + ln.Addr().String(),
	}
	go func() { _ = s.srv.Serve(ln) }()
	return s, nil
}

func (s *server) close() {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if err := s.srv.Shutdown(ctx); err != nil {
		_ = s.srv.Close()
	}
}
